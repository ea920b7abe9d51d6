"""The switch and verification scripts, run as the host runs them, against a real caddy:2 container.

The release scenarios (test_release.py) prove the switch under load; this proves the
scripts' own bookkeeping in a few seconds: the slot files, the one reload when the
Caddyfile changes and none otherwise, pruned slots, and what a failed verification
puts back (upstreams, and the Caddyfile when that update changed it).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from components.caddyfile import LIVE_DIR, Route, render_caddyfile
from components.specs import switch_script, verify_script
from tests.e2e import infra

pytestmark = pytest.mark.e2e


@pytest.fixture
def proxy() -> Iterator[str]:
    infra.ensure_base_images()
    name = f"cutover-switch-test-{secrets.token_hex(3)}"
    infra.docker("run", "-d", "--name", name, "--label", "org.cutover.e2e=switch", "--network", "none", "--tmpfs", "/tmp", "caddy:2")
    try:
        yield name
    finally:
        infra.remove_container(name)


def switch(proxy: str, names: list[str]) -> str:
    caddyfile = render_caddyfile(Route(slots=len(names), port=8000))
    done = subprocess.run(["/bin/sh", "-c", switch_script(proxy, names, 0)], input=caddyfile, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def verify(proxy: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", verify_script(proxy, 9180, "/health", "v2", 1, 1)], capture_output=True, text=True, check=False)


def slots(proxy: str) -> list[str]:
    script = f'for f in $(ls {LIVE_DIR} | sort -n); do cat "{LIVE_DIR}/$f"; echo; done'
    return infra.docker("exec", proxy, "sh", "-c", script).stdout.split()


def running_slots(proxy: str) -> int:
    """How many upstream slots the config Caddy runs has (its admin API, not the file)."""
    config = json.loads(infra.docker("exec", proxy, "wget", "-q", "-O", "-", "http://localhost:2019/config/").stdout)
    route = config["apps"]["http"]["servers"]["srv0"]["routes"][0]
    text = json.dumps(route)
    return sum(1 for n in range(10) if f"{{file.{LIVE_DIR}/{n}}}:8000" in text)


def test_switch_rewrites_slots_reloads_only_on_config_change_and_a_failed_verify_restores(proxy: str) -> None:
    first = switch(proxy, ["web-a-0", "web-a-1"])
    assert "reloaded" in first and slots(proxy) == ["web-a-0", "web-a-1"] and running_slots(proxy) == 2

    # a release: new names, same Caddyfile -> no reload
    second = switch(proxy, ["web-b-0", "web-b-1"])
    assert "reloaded" not in second and slots(proxy) == ["web-b-0", "web-b-1"]

    # its verification fails (nothing answers behind these names): the previous names come back
    failed = verify(proxy)
    assert failed.returncode == 1 and "routes to the previous release again" in failed.stderr, failed.stderr
    assert "last response: " in failed.stderr and " 502 " in failed.stderr, "it says what the proxy answered"
    assert "previous configuration" not in failed.stderr  # this update did not change the Caddyfile
    assert slots(proxy) == ["web-a-0", "web-a-1"]

    # fewer replicas: a new Caddyfile (one reload), the extra slot pruned
    third = switch(proxy, ["web-c-0"])
    assert "reloaded" in third and slots(proxy) == ["web-c-0"] and running_slots(proxy) == 1

    # a failed verification after a config change puts both back, and Caddy runs the old config again
    failed = verify(proxy)
    assert failed.returncode == 1 and "previous configuration back" in failed.stderr, failed.stderr
    assert slots(proxy) == ["web-a-0", "web-a-1"] and running_slots(proxy) == 2
