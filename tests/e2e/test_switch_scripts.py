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
from typing import Any

import pytest

from components.edge.caddyfile import LIVE_DIR, VERIFY_DIR, Route, render_caddyfile
from components.release.go_live import Canary, Probation, Verification, go_live_script
from tests.e2e import infra

pytestmark = pytest.mark.e2e


class Edge:
    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.network = f"cutover-switch-test-{self.tag}"
        self.proxy = f"cutover-switch-proxy-{self.tag}"
        self.containers: list[str] = [self.proxy]

    def upstream(self, name: str, healthy: bool = True, status: int | None = None) -> str:
        """A container the proxy can reach by name, with a healthcheck that passes (or never does); with `status`,
        one that answers every request with it (`caddy respond`)."""
        full = f"{name}-{self.tag}"
        answers = ["caddy", "respond", "--listen", ":80", "--status", str(status), "bad page"] if status else []
        infra.docker(
            "run", "-d", "--name", full, "--label", "org.cutover.e2e=switch", "--network", self.network, "--tmpfs", "/tmp",
            "--health-cmd", "true" if healthy else "false", "--health-interval", "1s", "--health-retries", "1", "caddy:2",
            *answers,
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


def go_live(
    edge: Edge, names: list[str], *, verify: bool = False, probation: Probation | None = None, canary: Canary | None = None
) -> subprocess.CompletedProcess[str]:
    # without the proxy's own probe of each slot (its health_* lines): these upstreams are bare Caddy containers,
    # answering 404 to /health (or 500 to everything), which it would set aside; the probe is what the release
    # scenarios measure (tests/e2e/test_release.py, a frozen web replica and a failed verification)
    caddyfile = infra.without_upstream_probe(render_caddyfile(Route(slots=len(names), port=80)))
    check = Verification(9180, "/health", "v2", 1, 1) if verify else None
    script = go_live_script(edge.proxy, names, drain_s=0, wait_healthy_s=5, verification=check, probation=probation, canary=canary)
    return subprocess.run(["/bin/sh", "-c", script], input=caddyfile, capture_output=True, text=True, check=False, timeout=120)


def slots(proxy: str, directory: str = LIVE_DIR) -> list[str]:
    script = f'for f in $(ls {directory} | sort -n); do cat "{directory}/$f"; echo; done'
    return infra.docker("exec", proxy, "sh", "-c", script).stdout.split()


def running_slots(proxy: str) -> int:
    """How many upstream slots the config Caddy runs has: the copy of its running config it saves on each load
    (autosave.json; its admin API is a socket inside the container, and the Caddyfile is only the file)."""
    config = json.loads(infra.docker("exec", proxy, "cat", "/config/caddy/autosave.json").stdout)
    text = json.dumps(config["apps"]["http"]["servers"])  # only the public site reads the live slots
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

    # its verification fails (these upstreams answer 404 on /health), through the verify listener's own slots,
    # before any public slot names them: the public slots never changed
    c = [edge.upstream("web-d-0"), edge.upstream("web-d-1")]
    failed = go_live(edge, c, verify=True)
    assert failed.returncode == 1 and "still routes to the previous release: no public slot named" in failed.stderr, failed.stderr
    assert "last response: " in failed.stderr and " 404 " in failed.stderr, "it says what the proxy answered"
    assert f"X-Cutover-Upstream: {c[0]}:80" in failed.stderr or f"X-Cutover-Upstream: {c[1]}:80" in failed.stderr, failed.stderr
    assert "proxy now routes" not in failed.stdout and "previous configuration" not in failed.stderr
    assert slots(edge.proxy) == b and slots(edge.proxy, VERIFY_DIR) == c

    # fewer replicas: a new Caddyfile (one reload), the extra slot pruned
    third = go_live(edge, [c[0]])
    assert third.returncode == 0 and "reloaded" in third.stdout and slots(edge.proxy) == [c[0]] and running_slots(edge.proxy) == 1

    # a failed verification after a config change puts both back, and Caddy runs the old config again
    failed = go_live(edge, b, verify=False)  # back to two slots...
    assert failed.returncode == 0
    failed = go_live(edge, [c[1]], verify=True)  # ...then one, verified: fails, after the switch (a new Caddyfile)
    assert "it is checked through the proxy once they are installed" in failed.stdout, failed.stdout
    assert failed.returncode == 1 and "routes to the previous release again" in failed.stderr, failed.stderr
    assert "previous configuration back" in failed.stderr, failed.stderr
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


class Requests:
    """Requests to the proxy's public site from inside its container, one after another, until stopped; then
    which upstream answered each (the access log's `upstream` field) and with what status."""

    def __init__(self, proxy: str) -> None:
        self.proxy = proxy
        loop = "while :; do wget -q -O /dev/null http://127.0.0.1:80/ 2>/dev/null || true; sleep 0.02; done"
        self.since = infra.docker("exec", proxy, "date", "+%s").stdout.strip()
        self.process = subprocess.Popen(["docker", "exec", proxy, "sh", "-c", loop])

    def stop(self) -> list[tuple[str, int]]:
        self.process.kill()
        self.process.wait(timeout=10)
        infra.docker("exec", self.proxy, "pkill", "-f", "wget -q -O /dev/null", check=False)
        logs = infra.docker("logs", "--since", self.since, self.proxy)
        lines = (logs.stdout + logs.stderr).splitlines()  # the access log is on stdout (Caddyfile `output stdout`)
        answers = [json.loads(line) for line in lines if '"http.log.access' in line]
        return [(a.get("upstream", ""), a["status"]) for a in answers]


def go_live_under_requests(edge: Edge, names: list[str], **options: Any) -> tuple[subprocess.CompletedProcess[str], list[tuple[str, int]]]:
    """go_live while Requests asks the proxy; the step's result, and who answered each request with what."""
    load = Requests(edge.proxy)
    try:
        result = go_live(edge, names, **options)
    finally:
        answers = load.stop()
    return result, answers


def test_a_canary_serving_errors_is_taken_back_having_served_its_slot_only(edge: Edge) -> None:
    a = [edge.upstream("web-a-0"), edge.upstream("web-a-1")]
    assert go_live(edge, a).returncode == 0
    bad = [edge.upstream("web-b-0", status=500), edge.upstream("web-b-1", status=500)]
    failed, answers = go_live_under_requests(
        edge, bad, probation=Probation(seconds=20, max_error_rate=10), canary=Canary(seconds=20, max_error_rate=10)
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"canary: the proxy routes 1 of 2 slots to {bad[0]}; 1 still to the previous release" in failed.stdout
    assert "canary failed" in failed.stderr and f"{bad[0]} answered" in failed.stderr and "with a 5xx" in failed.stderr, failed.stderr
    assert "proxy now routes to" not in failed.stdout, "the other slot never left the previous release"
    assert slots(edge.proxy) == a, "the previous release is routed again"
    # Caddy named the upstream of every answer; only the canary's were errors, and the other slot never saw the release
    by_upstream = {u.split(":")[0] for u, _ in answers}
    assert bad[1] not in by_upstream and bad[0] in by_upstream, by_upstream
    assert all(status == 200 for u, status in answers if not u.startswith(bad[0])), answers
    assert {status for u, status in answers if u.startswith(bad[0])} == {500}


def test_a_good_canary_passes_then_every_slot_switches(edge: Edge) -> None:
    a = [edge.upstream("web-a-0"), edge.upstream("web-a-1")]
    assert go_live(edge, a).returncode == 0
    b = [edge.upstream("web-b-0"), edge.upstream("web-b-1")]
    passed, answers = go_live_under_requests(
        edge, b, probation=Probation(seconds=2, max_error_rate=10), canary=Canary(seconds=3, max_error_rate=10)
    )
    assert passed.returncode == 0, passed.stdout + passed.stderr
    out = passed.stdout
    assert out.index("canary passed: 3s") < out.index("proxy now routes to " + " ".join(b)) < out.index("probation passed: 2s"), out
    assert slots(edge.proxy) == b
    assert answers and all(status == 200 for _, status in answers)
    # a canary failing later reverts to the slots from before the canary, not to the canary's: see the test above;
    # here, what the script keeps to put back is the previous release in both slots
    kept = infra.docker("exec", edge.proxy, "sh", "-c", f"cat {LIVE_DIR}.prev/0; echo; cat {LIVE_DIR}.prev/1").stdout.split()
    assert kept == a


def test_a_changed_caddyfile_or_one_slot_goes_live_without_a_canary(edge: Edge) -> None:
    a = [edge.upstream("web-a-0")]
    first = go_live(edge, a, canary=Canary(seconds=3, max_error_rate=10))
    assert first.returncode == 0 and "canary: none, with one web container one slot is all the traffic" in first.stdout
    b = [edge.upstream("web-b-0"), edge.upstream("web-b-1")]
    grown = go_live(edge, b, canary=Canary(seconds=3, max_error_rate=10))  # two slots now: a new Caddyfile
    assert grown.returncode == 0 and "canary: none, the proxy settings change with this release" in grown.stdout, grown.stdout
    assert slots(edge.proxy) == b


def test_the_error_rate_reads_the_logs_end_then_its_window(edge: Edge) -> None:
    """What probation's count relies on (LOG_LINES_JUDGED, components/release/go_live.py): `docker logs --since T
    --tail N` reads the last N lines and then drops those older than T (moby daemon/logger/loggerutils/logfile.go,
    tailFiles then forwarder.Do), so a judgement costs the same on a proxy that logged for days."""
    lines = 50_000
    name = f"cutover-switch-log-{edge.tag}"
    infra.docker(
        "run", "-d", "--name", name, "--label", "org.cutover.e2e=switch", "--entrypoint", "sh", "caddy:2", "-c", f"seq 1 {lines}; sleep 600"
    )
    edge.containers.append(name)
    deadline = time.monotonic() + 30
    while infra.docker("logs", "--tail", "1", name).stdout.strip() != str(lines):
        assert time.monotonic() < deadline, "the container never logged its lines"
        time.sleep(0.2)
    now = int(infra.docker("exec", name, "date", "+%s").stdout)
    window = infra.docker("logs", "--since", str(now - 300), "--tail", "2000", name).stdout.split()
    assert window == [str(n) for n in range(lines - 1999, lines + 1)], "the last 2000 lines, in order"
    after = infra.docker("logs", "--since", str(now + 2), "--tail", "2000", name).stdout.split()
    assert after == [], "--since still applies to the lines --tail kept"
    whole = infra.docker("logs", "--since", str(now - 300), name).stdout.split()
    assert len(whole) == lines, "without --tail, the whole log is read"
