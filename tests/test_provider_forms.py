"""Values sent in the spelling the docker provider reads back, so that an unchanged input is no change.

The expected strings were produced by the provider's own Go code (kreuzwerker v4.5.0
internal/provider/helpers.go `nanoInt64ToDecimalString` after docker/cli `opts.ParseCPUs`,
and Go's `time.Duration.String()`), run on these inputs.
"""

from __future__ import annotations

import pytest

from components.config.provider_forms import decimal_cpus, go_duration, nano_cpus, provider_cpus, swarm_duration

# input -> what Read stores after Create (Go), and whether sending that is stable
GO_CPUS = [
    ("0.5", "0.5", True),
    ("1", "1.0", True),
    ("1.0", "1.0", True),
    ("1.5", "1.5", True),
    ("2", "2.0", True),
    ("3", "3.0", True),
    ("10", "10.", True),
    ("12", "12.0", True),
    ("16", "16.0", True),
    ("20", "20.", True),
    ("100", "100.", True),
    ("101", "101.", True),
    ("0.1", "0.1", True),
    ("0.2", "0.2", True),
    ("0.25", "0.25", True),
    ("0.125", "0.125", True),
    ("1.05", "1.05", True),
    ("1.25", "1.25", True),
    ("0.01", "0.0", False),
    ("0.05", "0.1", False),
    ("100.25", "100.3", False),
]


@pytest.mark.parametrize(("value", "read_back", "stable"), GO_CPUS)
def test_cpus_are_sent_as_the_provider_reads_them_back(value: str, read_back: str, stable: bool) -> None:
    nano = nano_cpus(value)
    assert nano is not None
    assert decimal_cpus(nano) == read_back
    assert provider_cpus(value) == (read_back if stable else None)
    if stable:
        assert provider_cpus(read_back) == read_back, "sending the read-back form reads back the same"


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1e3", "0.0000000001", ""])
def test_cpus_that_cannot_be_a_limit(value: str) -> None:
    assert provider_cpus(value) is None


GO_DURATIONS = [
    ("2s", "2s"),
    ("3s", "3s"),
    ("10s", "10s"),
    ("1m", "1m0s"),
    ("90s", "1m30s"),
    ("1m30s", "1m30s"),
    ("60s", "1m0s"),
    ("2m", "2m0s"),
    ("1h", "1h0m0s"),
    ("1h30m", "1h30m0s"),
    ("3600s", "1h0m0s"),
    ("61m", "1h1m0s"),
    ("25h", "25h0m0s"),
    ("500ms", "500ms"),
    ("100ms", "100ms"),
    ("1000ms", "1s"),
    ("1500ms", "1.5s"),
    ("0s", "0s"),
]


@pytest.mark.parametrize(("value", "go"), GO_DURATIONS)
def test_durations_in_gos_own_form(value: str, go: str) -> None:
    assert go_duration(value) == go
    assert go_duration(go.replace("1.5s", "1500ms")) == go, "the Go form is a fixed point"


def test_a_non_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        go_duration("10")


# kreuzwerker v4.5.0 shortDur (resource_docker_service_structures.go:1341-1350): Go's form, then a trailing "m0s"
# loses its "0s" and a trailing "h0m" its "0m"
SWARM_DURATIONS = [
    ("600s", "10m"),
    ("10m", "10m"),
    ("90s", "1m30s"),
    ("1h", "1h"),
    ("3600s", "1h"),
    ("61m", "1h1m"),
    ("1h30m", "1h30m"),
    ("2s", "2s"),
    ("500ms", "500ms"),
    ("0s", "0s"),
]


@pytest.mark.parametrize(("value", "short"), SWARM_DURATIONS)
def test_service_durations_in_the_providers_short_form(value: str, short: str) -> None:
    assert swarm_duration(value) == short
    assert swarm_duration(short) == short, "the short form is a fixed point"
