"""The go-live script, run as the host runs it, against a real caddy:2 container and real upstreams.

The release scenarios (test_release.py) prove the switch under load; this proves the
script's own bookkeeping in a few seconds: the health gate (a container that is not
running and healthy is refused before anything changes), the slot files, the one reload
when the Caddyfile changes and none otherwise, pruned slots, and what a failed
verification puts back (upstreams, and the Caddyfile when that update changed it).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from components.edge.caddyfile import LIVE_DIR, Route, render_caddyfile
from components.release.go_live import Probation, Verification, go_live_script
from tests.e2e import infra

pytestmark = pytest.mark.e2e


class Edge:
    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.network = f"cutover-switch-test-{self.tag}"
        self.proxy = f"cutover-switch-proxy-{self.tag}"
        self.containers: list[str] = [self.proxy]

    def upstream(self, name: str, healthy: bool = True) -> str:
        """A container the proxy can reach by name, with a healthcheck that passes (or never does)."""
        full = f"{name}-{self.tag}"
        infra.docker(
            "run", "-d", "--name", full, "--label", "org.cutover.e2e=switch", "--network", self.network, "--tmpfs", "/tmp",
            "--health-cmd", "true" if healthy else "false", "--health-interval", "1s", "--health-retries", "1", "caddy:2",
        )  # fmt: skip
        self.containers.append(full)
        deadline = time.monotonic() + 30
        want = "healthy" if healthy else "unhealthy"
        while infra.docker("inspect", "--format", "{{.State.Health.Status}}", full).stdout.strip() != want:
            assert time.monotonic() < deadline, f"{full} never became {want}"
            time.sleep(0.3)
        return full


@pytest.fixture
def edge() -> Iterator[Edge]:
    infra.ensure_base_images()
    e = Edge()
    infra.docker("network", "create", "--label", "org.cutover.e2e=switch", e.network)
    infra.docker("run", "-d", "--name", e.proxy, "--label", "org.cutover.e2e=switch", "--network", e.network, "--tmpfs", "/tmp", "caddy:2")
    try:
        yield e
    finally:
        for name in e.containers:
            infra.remove_container(name)
        infra.docker("network", "rm", e.network, check=False)


def go_live(edge: Edge, names: list[str], *, verify: bool = False, probation: Probation | None = None) -> subprocess.CompletedProcess[str]:
    caddyfile = render_caddyfile(Route(slots=len(names), port=80))
    check = Verification(9180, "/health", "v2", 1, 1) if verify else None
    script = go_live_script(edge.proxy, names, drain_s=0, wait_healthy_s=5, verification=check, probation=probation)
    return subprocess.run(["/bin/sh", "-c", script], input=caddyfile, capture_output=True, text=True, check=False, timeout=120)


def slots(proxy: str) -> list[str]:
    script = f'for f in $(ls {LIVE_DIR} | sort -n); do cat "{LIVE_DIR}/$f"; echo; done'
    return infra.docker("exec", proxy, "sh", "-c", script).stdout.split()


def running_slots(proxy: str) -> int:
    """How many upstream slots the config Caddy runs has: the copy of its running config it saves on each load
    (autosave.json; its admin API is a socket inside the container, and the Caddyfile is only the file)."""
    config = json.loads(infra.docker("exec", proxy, "cat", "/config/caddy/autosave.json").stdout)
    route = config["apps"]["http"]["servers"]["srv0"]["routes"][0]
    text = json.dumps(route)
    return sum(1 for n in range(10) if f"{{file.{LIVE_DIR}/{n}}}:80" in text)


def test_go_live_gates_on_health_switches_and_a_failed_verify_restores(edge: Edge) -> None:
    a = [edge.upstream("web-a-0"), edge.upstream("web-a-1")]
    first = go_live(edge, a)
    assert first.returncode == 0, first.stderr
    assert "reloaded" in first.stdout and slots(edge.proxy) == a and running_slots(edge.proxy) == 2

    # a release: new names, same Caddyfile -> no reload
    b = [edge.upstream("web-b-0"), edge.upstream("web-b-1")]
    second = go_live(edge, b)
    assert second.returncode == 0 and "reloaded" not in second.stdout and slots(edge.proxy) == b

    # a container that is not healthy now, or not there at all, is refused before anything changes
    sick = edge.upstream("web-c-0", healthy=False)
    refused = go_live(edge, [b[0], sick])
    assert refused.returncode == 1 and f"refusing to route to {sick}: Docker reports it running/unhealthy" in refused.stderr
    missing = go_live(edge, [f"web-gone-{edge.tag}"])
    assert missing.returncode == 1 and "refusing to route to" in missing.stderr and "missing" in missing.stderr
    assert slots(edge.proxy) == b and "proxy now routes" not in refused.stdout + missing.stdout

    # its verification fails (these upstreams answer 404 on /health): the previous names come back
    c = [edge.upstream("web-d-0"), edge.upstream("web-d-1")]
    failed = go_live(edge, c, verify=True)
    assert failed.returncode == 1 and "routes to the previous release again" in failed.stderr, failed.stderr
    assert "last response: " in failed.stderr and " 404 " in failed.stderr, "it says what the proxy answered"
    assert "previous configuration" not in failed.stderr  # this update did not change the Caddyfile
    assert slots(edge.proxy) == b

    # fewer replicas: a new Caddyfile (one reload), the extra slot pruned
    third = go_live(edge, [c[0]])
    assert third.returncode == 0 and "reloaded" in third.stdout and slots(edge.proxy) == [c[0]] and running_slots(edge.proxy) == 1

    # a failed verification after a config change puts both back, and Caddy runs the old config again
    failed = go_live(edge, b, verify=False)  # back to two slots...
    assert failed.returncode == 0
    failed = go_live(edge, [c[1]], verify=True)  # ...then one, verified: fails
    assert failed.returncode == 1 and "previous configuration back" in failed.stderr, failed.stderr
    assert slots(edge.proxy) == b and running_slots(edge.proxy) == 2


def test_probation_puts_the_previous_release_back_within_a_second_of_a_death(edge: Edge) -> None:
    a = [edge.upstream("web-a-0")]
    assert go_live(edge, a).returncode == 0
    b = [edge.upstream("web-b-0"), edge.upstream("web-b-1")]
    killed: list[float] = []

    def die() -> None:
        killed.append(time.monotonic())
        infra.docker("kill", "--signal", "KILL", b[1])

    threading.Timer(3, die).start()
    failed = go_live(edge, b, probation=Probation(seconds=20, max_error_rate=10))
    reverted = time.monotonic()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "probation failed" in failed.stderr and f"container {b[1]}: " in failed.stderr, failed.stderr
    assert f"--- the last lines of the log of {b[1]}:" in failed.stderr
    assert slots(edge.proxy) == a, "the previous release is routed again"
    # the script returned (restored, explained) within a few seconds of the death, not at the end of its 20 s
    assert killed and reverted - killed[0] < 3, reverted - killed[0]


def test_a_release_that_stays_well_passes_its_probation(edge: Edge) -> None:
    a = [edge.upstream("web-a-0")]
    started = time.monotonic()
    passed = go_live(edge, a, probation=Probation(seconds=4, max_error_rate=10))
    assert passed.returncode == 0, passed.stderr
    assert "probation passed: 4s" in passed.stdout and time.monotonic() - started >= 4
    assert slots(edge.proxy) == a
