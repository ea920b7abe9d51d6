"""Side-by-side deploy benchmark: the same app image, the same load, the same machine, three ways.

    (a) plain script:   docker stop -> docker rm -> docker run of the new image
    (b) compose-style:  what `docker compose up -d --wait` does when the image changed (stop the old
                        container, rename it, create the new one, remove the old, start, wait until
                        healthy), replayed with the docker CLI: Compose is not installed here
    (c) cutover:        this project's release (the program's resources applied by tests/e2e/replay: new
                        health-gated containers beside the old ones, proxy switch, verification,
                        old containers stopped and removed)

(a) and (b) run behind the same Caddy image and the same Caddyfile (rendered by
components/edge/caddyfile.py) whose one upstream slot names `app`; (c) behind the edge
proxy the program declares. Each run measures failed requests, the longest time
without a successful response, and how long the deploy took (until the new
release served). A control follows: the edge alone switched between two healthy
containers, by `caddy reload` and by a slot file rename (what the switch does),
which tells what the switch mechanism itself costs clients.
Run (about 1.5 minutes per run on 2 cores after the first build, plus ~2 minutes of edge switches):

    .venv/bin/python -m tests.e2e.bench --runs 3 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import secrets
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.config.model import HealthcheckConfig
from components.edge.caddyfile import ADMIN, ADMIN_SOCKET, Route, render_caddyfile, slot_path
from tests.e2e import infra
from tests.e2e.loadgen import LoadGen, Result
from tests.e2e.replay.engine import Engine, UpdateFailedError
from tests.e2e.replay.stack import Stack, e2e_config_on, ensure_app_wheels, fake_sha, remove_stack_objects

THREADS = 16  # keep-alive clients
FRESH_THREADS = 4  # clients that open a new connection per request
LABEL = "org.cutover.e2e=bench"
NET = "cutover-bench-net"
EDGE = "cutover-bench-edge"
APP = "cutover-bench-app"


class Load:
    """Steady traffic through the edge for the duration of a block, from two kinds of clients:
    keep-alive connections (`result`, the main measure: what browsers and API clients do) and a
    few clients opening a new connection per request (`fresh`), which tells failures of the edge's
    own connection handling apart from failures of the release sequence. Times are on one clock."""

    def __init__(self, url: str, threads: int = THREADS, fresh_threads: int = FRESH_THREADS, **client: Any) -> None:
        """client: LoadGen's tls and connect_to, for HTTPS to a domain served on loopback."""
        self.gen = LoadGen(url, threads=threads, max_duration=900, **client)
        self.fresh_gen = LoadGen(url, threads=fresh_threads, keep_alive=False, max_duration=900, **client)
        self.result: Result | None = None
        self.fresh: Result | None = None
        self.t0 = 0.0

    def __enter__(self) -> Load:
        self.gen.start()
        self.fresh_gen.start()
        self.t0 = time.monotonic() - self.gen.elapsed()
        time.sleep(1.0)  # traffic is flowing before anything happens
        return self

    def __exit__(self, *exc: object) -> None:
        if self.result is None:
            self.stop(settle=0)

    def stop(self, settle: float = 1.0) -> Result:
        time.sleep(settle)
        self.result = self.gen.stop()
        self.fresh = self.fresh_gen.stop()
        return self.result

    def rel(self, t: float) -> float:
        """A monotonic time as seconds since the keep-alive load started (its records' clock)."""
        return t - self.t0

    def numbers(self) -> dict[str, Any]:
        assert self.result is not None and self.fresh is not None
        res, fresh = self.result, self.fresh
        return {
            "requests": res.total + fresh.total,
            "failed": res.failed + fresh.failed,
            "failed_keepalive": res.failed,
            "failed_new_conn": fresh.failed,
            "rate_per_s": round(res.rate + fresh.rate),
            "longest_gap_s": round(max(res.longest_gap, fresh.longest_gap), 3),
            "errors": dict(res.errors + fresh.errors),
            "failures": [
                f"{kind} at {r.start:.3f}s: {r.error}: {r.detail}"
                for kind, result in (("keep-alive", res), ("new-conn", fresh))
                for r in result.failures[:5]
            ],
        }

    def assert_nothing_failed(self) -> None:
        """Zero failed requests from either kind of client (the design's invariant)."""
        assert self.result is not None and self.fresh is not None
        assert self.fresh.failed == 0, "new-connection clients: " + self.fresh.summary()
        assert self.result.failed == 0, "keep-alive clients: " + self.result.summary()


# --------------------------------------------------------------------------- (a) and (b): one container named app


def app_options(version: str, alias: str = "app") -> list[str]:
    """The web container as the program runs it, in docker CLI terms (healthcheck in shell form)."""
    test = HealthcheckConfig(interval="1s", retries=2, start_period="10s").test()
    probe = test[1] if test[0] == "CMD-SHELL" else shlex.join(test[1:])
    return [
        "--label", LABEL, "--network", NET, "--network-alias", alias,
        "--user", "10001:10001", "--read-only", "--tmpfs", "/tmp:rw,noexec,nosuid,size=64m",
        "--memory", "512m", "--cpus", "1", "--stop-signal", "SIGTERM", "--stop-timeout", "10",
        "--init", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", "--restart", "unless-stopped",
        "--health-cmd", probe, "--health-interval", "1s", "--health-timeout", "3s",
        "--health-retries", "2", "--health-start-period", "10s",
        "-e", f"APP_VERSION={version}", "-e", "PORT=8000",
    ]  # fmt: skip


def healthy(name: str) -> bool:
    out = infra.docker("inspect", "--format", "{{json .State}}", name, check=False)
    if out.returncode != 0:
        return False
    state = json.loads(out.stdout)
    return bool(state.get("Running")) and (state.get("Health") or {}).get("Status") == "healthy"


def wait_until(predicate: Any, timeout: float = 90, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise infra.InfraError(f"not true after {timeout}s: {predicate}")
        time.sleep(step)


def fixed_name_caddyfile(upstream: str | None = None) -> str:
    """The program's Caddyfile for one upstream slot, whose file names `app`. With `upstream`,
    the same routes naming that container in the Caddyfile itself (how the switch worked
    before it used slot files: a new name meant a `caddy reload`)."""
    text = render_caddyfile(Route(slots=1, port=8000, grace_period_s=10))
    return text if upstream is None else text.replace("{file." + slot_path(0) + "}", upstream)


@contextlib.contextmanager
def fixed_name_edge(workdir: Path) -> Iterator[tuple[int, Path]]:
    """A Caddy edge whose one upstream slot names `app`; yields its port on 127.0.0.1 and its /etc/caddy."""
    port = infra.free_port()
    etc = workdir / "etc"
    (etc / "live").mkdir(parents=True)
    (etc / "Caddyfile").write_text(fixed_name_caddyfile())
    (etc / "live" / "0").write_text("app")
    for path in (workdir, etc, etc / "live"):
        path.chmod(0o755)
    infra.docker("network", "create", "--label", LABEL, NET)
    try:
        infra.docker(
            "run", "-d", "--name", EDGE, "--label", LABEL, "--network", NET, "--read-only", "--tmpfs", "/tmp",
            "-v", f"{etc}:/etc/caddy", "-p", f"127.0.0.1:{port}:80",
            "--health-cmd", f"test -S {ADMIN_SOCKET} || wget -q -O /dev/null http://localhost:2019/config/", "--health-interval", "1s",
            "caddy:2",
        )  # fmt: skip
        infra.wait_healthy(EDGE, timeout=60)
        yield port, etc
    finally:
        for name in (EDGE, APP, f"{APP}-old", f"{APP}-b"):
            infra.docker("rm", "-f", "-v", name, check=False)  # -v: caddy:2 declares VOLUME /config /data
        infra.docker("network", "rm", NET, check=False)


def start_app(image: str, version: str, name: str = APP, alias: str = "app") -> None:
    infra.docker("rm", "-f", "-v", name, check=False)
    infra.docker("run", "-d", "--name", name, *app_options(version, alias), image)
    wait_until(lambda: healthy(name))


def flow_plain(image: str, version: str) -> float:
    """(a) stop -> rm -> run; the deploy is done when the new container is healthy."""
    started = time.monotonic()
    infra.docker("stop", APP)
    infra.docker("rm", APP)
    infra.docker("run", "-d", "--name", APP, *app_options(version), image)
    wait_until(lambda: healthy(APP))
    return time.monotonic() - started


def flow_compose(image: str, version: str) -> float:
    """(b) Compose v2's recreate of a service whose image changed, then --wait for healthy."""
    started = time.monotonic()
    infra.docker("stop", "-t", "10", APP)
    infra.docker("rename", APP, f"{APP}-old")
    infra.docker("create", "--name", APP, *app_options(version), image)
    infra.docker("rm", f"{APP}-old")
    infra.docker("start", APP)
    wait_until(lambda: healthy(APP))
    return time.monotonic() - started


def use_edge_caddyfile(etc: Path, text: str) -> None:
    """Give the fixed-name edge this Caddyfile (a reload with no load running)."""
    if (etc / "Caddyfile").read_text() != text:
        (etc / "Caddyfile").write_text(text)
        infra.docker("exec", EDGE, "caddy", "reload", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile")


SWITCH_MECHANISMS = {
    "reload": "`caddy reload` of a Caddyfile naming the new container (the switch before slot files)",
    "slot": "rename of a new slot file (the switch now: no reload)",
}


def switch_series(port: int, etc: Path, switches: int, image: str, version: str) -> dict[str, dict[str, Any]]:
    """The edge alone, two healthy containers of the same release (`app`, `app-b`) and no release at all:
    the upstream is switched between them once a second under the same load, by each mechanism in turn."""
    start_app(image, version, name=f"{APP}-b", alias="app-b")
    series: dict[str, dict[str, Any]] = {}
    caddyfile, slot = etc / "Caddyfile", etc / "live" / "0"
    reload = ["exec", EDGE, "caddy", "reload", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]

    def point_at(mechanism: str, upstream: str) -> None:
        if mechanism == "reload":
            caddyfile.write_text(fixed_name_caddyfile(upstream))  # same inode: the bind mount sees it
            infra.docker(*reload)
        else:
            nxt = slot.with_name("0.next")
            nxt.write_text(upstream)
            nxt.chmod(0o644)
            os.replace(nxt, slot)

    for mechanism in SWITCH_MECHANISMS:
        point_at(mechanism, "app")
        time.sleep(1.0)
        with Load(f"http://127.0.0.1:{port}/") as load:
            for i in range(switches):
                point_at(mechanism, "app-b" if i % 2 == 0 else "app")
                time.sleep(1.0)
            load.stop()
        series[mechanism] = {"switches": switches, **load.numbers()}
        infra.log(f"edge switches by {mechanism}: {series[mechanism]}")
    caddyfile.write_text(fixed_name_caddyfile())
    infra.docker(*reload)
    point_at("slot", "app")
    return series


# --------------------------------------------------------------------------- the benchmark


@dataclasses.dataclass
class Sample:
    flow: str
    run: int
    deploy_s: float
    numbers: dict[str, Any]


FLOWS = {
    "0": "(0) control: the same load through cutover's edge, nothing released",
    "a": "(a) stop → rm → run (plain script)",
    "b": "(b) compose-style recreate (`up -d --wait`, replayed with the CLI)",
    "a+": "(a) behind cutover's Caddyfile (a failed dial retried for 5 s)",
    "b+": "(b) behind cutover's Caddyfile (a failed dial retried for 5 s)",
    "c": "(c) cutover release (tests/e2e/replay)",
    "d": "(d) a release that dies 12 s after it starts, probation off: a rollback by hand 30 s in",
    "e": "(e) the same release on probation (25 s): taken back by itself, then the workflow's cleanup",
}
# The flows of a release that goes bad once live; reported in a table of their own.
BAD_RELEASE_FLOWS = ("d", "e")
CRASHING = {"web": {"env": {"APP_CRASH_AFTER": "12"}}}
# (a) and (b) sit behind the edge with the Caddyfile a team writes (`reverse_proxy app:8000`),
# then behind the program's own (a+, b+), whose dial retries turn an outage into waiting clients.
PLAIN_CADDYFILE = f"{{\n\tadmin {ADMIN}\n\tauto_https off\n}}\n\n:80 {{\n\treverse_proxy app:8000\n}}\n"


def bench(runs: int, switches: int) -> tuple[list[Sample], dict[str, Any], dict[str, dict[str, Any]]]:
    facts = machine_facts()
    edge: dict[str, dict[str, Any]] = {}
    infra.ensure_base_images()
    ensure_app_wheels()
    samples: list[Sample] = []
    salt = secrets.token_hex(4)
    with (
        infra.start_registry() as registry,
        infra.start_sshd() as host,
        infra.ssh_agent() as machine,
        tempfile.TemporaryDirectory(prefix="cutover-bench-") as tmp,
    ):
        remove_stack_objects("bench")  # what an interrupted run left
        engine = Engine(env=machine, log=infra.log)
        port = infra.free_port()
        config = e2e_config_on(registry, host, port)
        stack = Stack(engine, config, name="bench")
        try:
            # the two releases, built once by the program itself; (a) and (b) run the same images
            refs: dict[str, str] = {}
            for label in ("A", "B"):
                stack.up(sha=fake_sha(label, salt))
                refs[label] = stack.outputs["release"]["imageRef"]
            current = "B"
            with fixed_name_edge(Path(tmp)) as (edge_port, etc):
                for run in range(1, runs + 1):
                    for flow in ("a", "b", "a+", "b+"):
                        use_edge_caddyfile(etc, PLAIN_CADDYFILE if flow in ("a", "b") else fixed_name_caddyfile())
                        start_app(refs["A"], fake_sha("A", salt))
                        with Load(f"http://127.0.0.1:{edge_port}/") as load:
                            took = (flow_plain if flow.startswith("a") else flow_compose)(refs["B"], fake_sha("B", salt))
                            load.stop(settle=2.0)
                        samples.append(Sample(flow, run, took, load.numbers()))
                        infra.log(f"run {run} {FLOWS[flow]}: {took:.1f}s {samples[-1].numbers}")
                    nxt = "A" if current == "B" else "B"
                    with Load(f"http://127.0.0.1:{port}/") as load:
                        result = stack.up(sha=fake_sha(nxt, salt))
                        load.stop(settle=2.0)
                    current = nxt
                    samples.append(Sample("c", run, result.duration, load.numbers()))
                    infra.log(f"run {run} {FLOWS['c']}: {result.duration:.1f}s {samples[-1].numbers}")
                    # the machine's own noise: as long as that release took, the same load, nothing happening
                    with Load(f"http://127.0.0.1:{port}/") as load:
                        time.sleep(result.duration)
                        load.stop(settle=2.0)
                    samples.append(Sample("0", run, result.duration, load.numbers()))
                    infra.log(f"run {run} {FLOWS['0']}: {samples[-1].numbers}")
                    good = stack.outputs["release"]["imageRef"].split("@", 1)[1]
                    for flow, probation in (("d", "0s"), ("e", "25s")):
                        samples.append(bad_release(stack, port, flow, run, probation, fake_sha(f"crash-{flow}-{run}", salt), good))
                if switches:
                    start_app(refs["B"], fake_sha("B", salt))
                    edge = switch_series(edge_port, etc, switches, refs["B"], fake_sha("B", salt))
        finally:
            with contextlib.suppress(Exception):
                engine.destroy()
            for suffix in ("data", "config", "etc"):
                infra.docker("volume", "rm", f"web-bench-proxy-{suffix}", check=False)
            for ref in {*refs.values()} if "refs" in locals() else set():
                infra.docker("rmi", ref, check=False)
            images = infra.docker("images", "--format", "{{.Repository}}:{{.Tag}}", f"{registry.address}/cutover/web", check=False)
            for ref in images.stdout.split():
                infra.docker("rmi", ref, check=False)
            engine.close()
    return samples, facts, edge


# --------------------------------------------------------------------------- report


def bad_release(stack: Stack, port: int, flow: str, run: int, probation: str, sha: str, good: str) -> Sample:
    """A release whose processes die 12 s after they start, from the moment it is deployed until the good
    release (`good`, a digest) serves again: by hand 30 s in without probation (d), by itself with it (e),
    followed by what the deploy workflow then runs, a rollback to the digest that served before."""
    with Load(f"http://127.0.0.1:{port}/") as load:
        started = time.monotonic()
        with contextlib.suppress(UpdateFailedError):
            stack.up(sha=sha, overrides={**CRASHING, "releases": {"probation": probation}})
        if flow == "d":
            time.sleep(max(0.0, started + 30 - time.monotonic()))  # someone notices, and rolls back by hand
        stack.up(sha=sha, rollback_to=good)
        load.stop(settle=2.0)
    sample = Sample(flow, run, time.monotonic() - started, load.numbers())
    infra.log(f"run {run} {FLOWS[flow]}: {sample.deploy_s:.1f}s {sample.numbers}")
    return sample


def machine_facts() -> dict[str, Any]:
    def out(*argv: str) -> str:
        with contextlib.suppress(Exception):
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        return ""

    cpu = next((line.split(":", 1)[1].strip() for line in out("lscpu").splitlines() if line.startswith("Model name")), "?")
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "0")
    os_name = next(
        (line.split("=", 1)[1].strip('"') for line in Path("/etc/os-release").read_text().splitlines() if line.startswith("PRETTY_NAME")),
        "?",
    )
    engine = infra.ensure_engine()
    caddy = out("docker", "run", "--rm", "--network", "none", "caddy:2", "caddy", "version").split(" ")[0]
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{int(mem) // 1024 // 1024} GiB",
        "os": f"{os_name}, kernel {platform.release()}",
        "docker": f"engine {engine.server_version}, CLI {engine.client_version}",
        "caddy": f"{caddy} (caddy:2 {'stand-in: the official release binary on Debian' if infra.image_label('caddy:2', infra.STANDIN_LABEL) else 'image'})",
        "python": platform.python_version(),
        "load": f"{THREADS} keep-alive clients + {FRESH_THREADS} new-connection-per-request clients, unthrottled, GET / through the edge",
    }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _ratio(a: float, c: float) -> str:
    if c == 0:
        return "—" if a == 0 else "∞ (c: 0)"
    return f"{a / c:.1f}×"


def render(samples: list[Sample], facts: dict[str, Any], runs: int, command: str, edge: dict[str, dict[str, Any]] | None = None) -> str:
    by_flow = {f: [s for s in samples if s.flow == f] for f in FLOWS}
    med = {
        f: {
            "failed": _median([s.numbers["failed"] for s in ss]),
            "gap": _median([s.numbers["longest_gap_s"] for s in ss]),
            "deploy": _median([s.deploy_s for s in ss]),
        }
        for f, ss in by_flow.items()
    }
    lines = [
        "# Deploy benchmark",
        "",
        "The same app image, the same load and the same machine; three ways to replace the running release",
        "with a new one. Produced by `tests/e2e/bench.py`; reproduce with:",
        "",
        "```",
        command,
        "```",
        "",
        f"{runs} run(s) per flow. Failed requests: every request that did not answer 200 (refused, reset,",
        "closed without response, timeout after 3 s, 502...). Longest gap: the longest time without any",
        "successful response. Deploy: from the first step until the new release serves ((a), (b): its",
        "container is healthy; (c): the whole release as tests/e2e/replay applies it, including the image build (a cache hit),",
        "push, migration, health-gated start, switch, verification and removal of the old containers).",
        "",
        "| flow | failed requests (median; each run) | longest gap, s (median; each run) | deploy, s (median; each run) |",
        "|---|---|---|---|",
    ]
    for f, ss in by_flow.items():
        if not ss or f in BAD_RELEASE_FLOWS:
            continue
        failed = ", ".join(str(s.numbers["failed"]) for s in ss)
        gaps = ", ".join(f"{s.numbers['longest_gap_s']:.3f}" for s in ss)
        took = ", ".join(f"{s.deploy_s:.1f}" for s in ss)
        lines.append(f"| {FLOWS[f]} | {med[f]['failed']:g}; {failed} | {med[f]['gap']:.3f}; {gaps} | {med[f]['deploy']:.1f}; {took} |")
    lines += [
        "",
        "Ratios of the medians against (c):",
        "",
        "| flow | failed requests | longest gap | deploy duration |",
        "|---|---|---|---|",
    ]
    for f in FLOWS:
        if f in ("c", "0", *BAD_RELEASE_FLOWS) or not by_flow[f]:
            continue
        lines.append(
            f"| {FLOWS[f]} | {_ratio(med[f]['failed'], med['c']['failed'])} | {_ratio(med[f]['gap'], med['c']['gap'])} "
            f"| {_ratio(med[f]['deploy'], med['c']['deploy'])} |"
        )
    if any(by_flow[f] for f in BAD_RELEASE_FLOWS):
        lines += [
            "",
            "## A release that goes bad once live",
            "",
            "A release that passes its health check and the verification, then dies 12 s after it starts",
            "(and again after each restart). Measured from the deploy until the good release serves again,",
            "under the same load, in the same run:",
            "",
            "| flow | failed requests (median; each run) | longest gap, s (median; each run) | until the good release serves, s (median; each run) |",
            "|---|---|---|---|",
        ]
        for f in BAD_RELEASE_FLOWS:
            ss = by_flow[f]
            if not ss:
                continue
            failed = ", ".join(str(s.numbers["failed"]) for s in ss)
            gaps = ", ".join(f"{s.numbers['longest_gap_s']:.3f}" for s in ss)
            took = ", ".join(f"{s.deploy_s:.1f}" for s in ss)
            lines.append(f"| {FLOWS[f]} | {med[f]['failed']:g}; {failed} | {med[f]['gap']:.3f}; {gaps} | {med[f]['deploy']:.1f}; {took} |")
        d, e = med["d"], med["e"]
        lines += [
            "",
            f"Probation against none: failed requests {_ratio(e['failed'], d['failed'])}, longest gap {_ratio(e['gap'], d['gap'])}.",
            "What probation changes is who serves and for how long, more than the failed requests. Without it",
            "the old containers are gone when the crash comes, and the bad release keeps serving between its",
            "crashes: Docker's restart policy brings it back in about a second and the proxy's retries (5 s)",
            "carry most requests over each restart, so few fail, but the bad release stays live until",
            "someone rolls back. With probation the old containers still run, unrouted; the proxy routes to",
            "them again within a second of Docker's `die` event and the release is taken back by itself.",
            "Requests in flight on a dying container fail either way (the IncompleteRead and timeouts above).",
        ]
    lines += [
        "",
        "Requests and failures by client kind, per run:",
        "",
        "| flow | run | requests | req/s | failed keep-alive | failed new-connection | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        n = s.numbers
        errors = ", ".join(f"{k}: {v}" for k, v in n["errors"].items()) or "—"
        lines.append(
            f"| {s.flow} | {s.run} | {n['requests']} | {n['rate_per_s']} | {n['failed_keepalive']} | {n['failed_new_conn']} | {errors} |"
        )
    lines += [
        "",
        "The control (0) is the yardstick for the longest gap: with nothing released, under the same load",
        "on the same 2 cores, the longest time without a successful response is the machine's own noise",
        "(scheduling, garbage collection, the load generator itself). A release path whose longest gap",
        "is close to the control's added no gap of its own.",
        "",
        "Why (a) and (b) fail: the only container stops before its successor is up. Behind the",
        "Caddyfile a team writes (`reverse_proxy app:8000`), every request in that gap gets a 502 at",
        "once. Behind cutover's Caddyfile (a+, b+), Caddy retries the dial for `lb_try_duration` 5 s,",
        "so the same gap shows as clients waiting (the longest gap) rather than failing, as long as",
        "the new container boots within the client's 3 s timeout; it is still an outage of that",
        "length. Why (c) is slower to finish: it does",
        "more (build, push, migration, verification, a 2 s drain) and its new containers boot while the",
        "old ones carry the whole load on 2 cores; none of that time is visible to clients.",
    ]
    if edge:
        lines += [
            "",
            "## The switch itself",
            "",
            "The edge alone, with two healthy containers of the same release and no release at all: its",
            "upstream is switched between them once a second under the same load, by each mechanism in",
            "turn. This isolates what the switch step costs clients.",
            "",
            "| mechanism | switches | failed keep-alive | failed new-connection | failed per switch | errors |",
            "|---|---|---|---|---|---|",
        ]
        for mechanism, n in edge.items():
            errors = ", ".join(f"{k}: {v}" for k, v in n["errors"].items()) or "—"
            per = (n["failed_keepalive"] + n["failed_new_conn"]) / n["switches"]
            label = SWITCH_MECHANISMS.get(mechanism, mechanism)
            lines.append(f"| {label} | {n['switches']} | {n['failed_keepalive']} | {n['failed_new_conn']} | {per:.2f} | {errors} |")
        lines += [
            "",
            "Why a reload fails requests: reloading Caddy replaces its HTTP server. Requests in flight",
            "finish (`grace_period`), but idle HTTP/1.1 keep-alive connections are closed at once (a",
            "request sent on one at that instant gets no response), and connections still queued on the",
            "old listening socket are reset, which hits clients opening a new connection per request",
            "too. The slot files avoid both: Caddy reads the upstream's name from a file per request",
            "(`{file.*}` placeholder, Caddy 2.8+), so switching is a file rename and the HTTP server, its",
            "listener and every client connection stay as they are. Caddy reloads only when the proxy's",
            "own settings change (domain, port, replicas).",
        ]
    results = infra.CACHE_DIR / "e2e-results.json"
    if results.exists():
        data = json.loads(results.read_text())
        lines += [
            "",
            "## Scenario numbers",
            "",
            f"From the last e2e run (`{results.relative_to(infra.REPO_ROOT)}`, started {data.get('started', '?')};",
            "`make e2e` reproduces it). Its clients are the same as here: no request is ever sent twice.",
            "",
        ]
        for name, numbers in (data.get("scenarios") or {}).items():
            nested = {k: v for k, v in numbers.items() if isinstance(v, dict) and k != "errors"}
            for label, values in ({f"{name}.{k}": v for k, v in nested.items()} or {name: numbers}).items():
                shown = {k: v for k, v in values.items() if k != "failures" and (v or v == 0)}
                lines.append(f"- {label}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        if data.get("timings"):
            lines.append("- timings: " + ", ".join(f"{k}={v}" for k, v in data["timings"].items()))
    lines += ["", "Machine:", ""] + [f"- {k}: {v}" for k, v in facts.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--switches", type=int, default=30, help="edge-only switches per mechanism (0: skip)")
    parser.add_argument("--write", type=Path, help="write the report here (e.g. BENCHMARKS.md)")
    parser.add_argument("--json", type=Path, default=infra.CACHE_DIR / "bench-results.json")
    parser.add_argument("--render-only", action="store_true", help="re-render the report from --json, measuring nothing")
    args = parser.parse_args(argv)
    if args.render_only:
        data = json.loads(args.json.read_text())
        samples = [Sample(**s) for s in data["samples"]]
        facts, edge, runs, command = data["facts"], data["edge_switches"], data["runs"], data["command"]
    else:
        given = argv if argv is not None else sys.argv[1:]
        command = ".venv/bin/python -m tests.e2e.bench " + " ".join(shlex.quote(a) for a in given)
        runs = args.runs
        samples, facts, edge = bench(args.runs, args.switches)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"facts": facts, "samples": [dataclasses.asdict(s) for s in samples], "edge_switches": edge}
        args.json.write_text(json.dumps({**payload, "runs": runs, "command": command}, indent=2) + "\n")
    report = render(samples, facts, runs, command, edge)
    if args.write:
        args.write.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
