"""Values written in the form the docker provider reads them back. Pure.

pulumi-docker (the bridged kreuzwerker/terraform-provider-docker v4.5.0) ends every
container Create with a Read, stores what Read returns, and diffs the next update's
inputs against that. A value sent in another spelling than the one Read produces is
a change on every update; for a field marked ForceNew, such as `cpus`, that change
replaces the container every time. So the program sends each such value exactly as
Read will store it:

- `cpus`: Read stores `nanoInt64ToDecimalString(HostConfig.NanoCpus)`
  (kreuzwerker v4.5.0 internal/provider/helpers.go:131-149, called from
  resource_docker_container_funcs.go:946-948): "1" comes back as "1.0", "10" as
  "10.", and a few values not at all ("0.01" as "0.0").
- healthcheck durations: Read stores Go's `time.Duration.String()`
  (resource_docker_container_funcs.go:960-971): "1m" comes back as "1m0s".
- a service's durations (docker_service: healthcheck, stop grace period): Read stores
  `shortDur`, Go's form without a trailing "0s" after minutes or "0m" after hours
  (kreuzwerker v4.5.0 resource_docker_service_structures.go:1341-1350): "1m0s" comes
  back as "1m", and with no DiffSuppressFunc any other spelling is a change each update.
"""

from __future__ import annotations

import re
from fractions import Fraction

_NANO = 10**9


def nano_cpus(value: str) -> int | None:
    """docker/cli opts.ParseCPUs: the value as a rational times 1e9, which must be whole; None otherwise."""
    if not re.fullmatch(r"\d+(\.\d*)?|\.\d+", value.strip()):
        return None
    nano = Fraction(value.strip()) * _NANO
    return int(nano) if nano.denominator == 1 else None


def decimal_cpus(nano: int) -> str:
    """kreuzwerker's nanoInt64ToDecimalString, quirks included (a Rat printed with 9 decimals;
    exactly nine '0' characters in it means one decimal, otherwise trailing zeros are cut)."""
    if nano == 0:
        return "0"
    whole, frac = divmod(nano, _NANO)
    text = f"{whole}.{frac:09d}"
    if text.count("0") == 9:
        tenths = (nano * 10 + _NANO // 2) // _NANO  # big.Rat.FloatString(1): one decimal, rounded half up
        return f"{tenths // 10}.{tenths % 10}"
    return text.rstrip("0")


def provider_cpus(value: str) -> str | None:
    """The `cpus` string to send so that Read stores the same string; None when no spelling
    of `value` survives a read-back (it would replace the containers on every update)."""
    nano = nano_cpus(value)
    if nano is None or nano <= 0:
        return None
    canonical = decimal_cpus(nano)
    return canonical if nano_cpus(canonical) == nano else None


_UNITS_NS = {"h": 3600 * _NANO, "m": 60 * _NANO, "s": _NANO, "ms": 10**6}


def duration_ns(value: str) -> int:
    """'1m30s' -> 90e9 (the config's durations: whole numbers of h, m, s, ms)."""
    parts = re.findall(r"(\d+)(ms|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"not a duration: {value!r}")
    return sum(int(n) * _UNITS_NS[u] for n, u in parts)


def go_duration(value: str) -> str:
    """Go's time.Duration.String() of a duration: '1m' -> '1m0s', '90s' -> '1m30s', '1500ms' -> '1.5s'."""
    ns = duration_ns(value)
    if ns == 0:
        return "0s"
    if ns < _NANO:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return _frac(ns, size) + unit
    seconds = _frac(ns % (60 * _NANO), _NANO) + "s"
    minutes, hours = (ns // (60 * _NANO)) % 60, ns // (3600 * _NANO)
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{minutes}m{seconds}"
    return seconds


def _frac(ns: int, unit: int) -> str:
    whole, rest = divmod(ns, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{rest:0{digits}d}".rstrip("0")


def swarm_duration(value: str) -> str:
    """kreuzwerker's shortDur of a duration: '600s' -> '10m', '90s' -> '1m30s', '1h' -> '1h'."""
    text = go_duration(value)
    if text.endswith("m0s"):
        text = text[:-2]
    if text.endswith("h0m"):
        text = text[:-2]
    return text
