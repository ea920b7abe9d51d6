"""The e2e ACME helper finds the host's address on Docker's default bridge on a fresh engine too."""

from __future__ import annotations

from tests.e2e.acme import bridge_gateway


def test_the_recorded_gateway_comes_first() -> None:
    assert bridge_gateway(["172.17.0.1"], ["172.18.0.1/16"]) == "172.17.0.1"


def test_a_fresh_engine_without_a_recorded_gateway_falls_back_to_the_bridge_interface() -> None:
    # what `docker network inspect bridge` shows on an engine's very first start: the subnet, no Gateway
    assert bridge_gateway([], ["172.17.0.1/16"]) == "172.17.0.1"


def test_ipv6_only_addresses_are_not_a_gateway() -> None:
    assert bridge_gateway(["fd00::1"], ["fd00::1/64"]) is None
    assert bridge_gateway([], []) is None
