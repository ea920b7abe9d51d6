"""The edge after an engine restart, side by side: the proxy in the ports container's network namespace
alone, against the same with cutover's keeper beside it (components/edge/containers.py proxy_keeper_script). Both
edges run on one engine and go through the same restarts: dockerd is stopped (it stops every container, as on
a reboot) and started again, and each edge is asked for a page until it answers, for at most 30 s.

    .venv/bin/python -m tests.e2e.bench_restart --restarts 20 --write BENCHMARKS.md

writes its section ("## After an engine restart") into the report. It restarts this machine's dockerd, so it
runs only where tests/e2e/conftest.py may_restart_dockerd allows (CUTOVER_E2E_RESTART_DOCKERD=1, as root).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.config.model import StackIdentity
from components.edge.containers import DOCKER_SOCKET, PORTS_HOLD, proxy_keeper_script
from tests.e2e import infra
from tests.e2e.bench import _median
from tests.e2e.bench_proxy import write_section
from tests.e2e.conftest import may_restart_dockerd

SECTION = "## After an engine restart"
LABEL = "org.cutover.bench=restart"
WAIT_S = 30.0
FLOWS = {
    "alone": "the proxy in the ports container's namespace, no keeper",
    "keeper": "the same with cutover's keeper",
}


@dataclass(frozen=True)
class Edge:
    flow: str
    port: int

    @property
    def prefix(self) -> str:
        return f"cutover-bench-restart-{self.flow}"

    @property
    def ports(self) -> str:
        return f"{self.prefix}-ports"

    @property
    def proxy(self) -> str:
        return f"{self.prefix}-proxy"

    @property
    def keeper(self) -> str:
        return f"{self.prefix}-proxy-keeper"


def start_edge(edge: Edge) -> None:
    """The ports container and Caddy (its default site on :80) as the program runs them; and the keeper."""
    common = ["--label", LABEL, "--restart", "unless-stopped", "--init", "--security-opt", "no-new-privileges:true"]
    infra.docker("run", "-d", "--name", edge.ports, *common, "--read-only", "-p", f"127.0.0.1:{edge.port}:80", "caddy:2", *PORTS_HOLD)
    identity = StackIdentity("cutover-bench-restart", edge.flow)  # its prefix is edge.prefix
    labels = ["--label", f"cutover.app={identity.app_name}", "--label", f"cutover.stack={edge.flow}", "--label", "cutover.role=proxy"]
    infra.docker("run", "-d", "--name", edge.proxy, *common, *labels, "--network", f"container:{edge.ports}", "caddy:2")
    if edge.flow == "keeper":
        infra.docker("run", "-d", "--name", edge.keeper, *common, "--read-only", "--cap-drop", "ALL", "--network", "none",
                     "-v", f"{DOCKER_SOCKET}:{DOCKER_SOCKET}", "docker:28-cli", "sh", "-c", proxy_keeper_script(identity))  # fmt: skip


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def proxy_error(edge: Edge) -> str:
    return infra.docker("inspect", "-f", "{{.State.Error}}", edge.proxy).stdout.strip()


def keeper_starts(edge: Edge) -> int:
    """How many times the keeper has started the proxy (its log says so each time)."""
    if edge.flow != "keeper":
        return 0
    return infra.docker("logs", edge.keeper).stdout.count("was not started")


def bench(restarts: int) -> dict[str, list[dict[str, Any]]]:
    reason = may_restart_dockerd()
    if reason:
        raise SystemExit(f"not run: {reason}")
    infra.ensure_base_images()
    edges = [Edge(flow, infra.free_port()) for flow in FLOWS]
    results: dict[str, list[dict[str, Any]]] = {flow: [] for flow in FLOWS}
    try:
        for edge in edges:
            start_edge(edge)
        for edge in edges:
            deadline = time.monotonic() + WAIT_S
            while not answers(edge.port):
                if time.monotonic() > deadline:
                    raise infra.InfraError(f"{edge.flow}: the edge does not answer before any restart")
                time.sleep(0.2)
        for run in range(1, restarts + 1):
            started_before = {edge.flow: keeper_starts(edge) for edge in edges}
            engine_back = infra.restart_dockerd()
            back_at = time.monotonic()
            answered: dict[str, float] = {}  # both edges asked in turn, each until it answers, for WAIT_S at most
            while len(answered) < len(edges) and time.monotonic() - back_at < WAIT_S:
                for edge in edges:
                    if edge.flow not in answered and answers(edge.port):
                        answered[edge.flow] = round(time.monotonic() - back_at, 2)
                time.sleep(0.1)
            for edge in edges:
                refused = "cannot join network" in proxy_error(edge) or keeper_starts(edge) > started_before[edge.flow]
                numbers = {"engine_back_s": round(engine_back, 1), "start_refused": refused, "answered_after_s": answered.get(edge.flow)}
                results[edge.flow].append(numbers)
                infra.log(f"restart {run}, {edge.flow}: {numbers}")
                if edge.flow not in answered:  # what was left down, then put back by hand, as an operator would
                    names = [edge.ports, edge.proxy] + ([edge.keeper] if edge.flow == "keeper" else [])
                    fmt = "{{.Name}} {{.State.Status}} started {{.State.StartedAt}} error {{.State.Error}}"
                    infra.log(infra.docker("inspect", "-f", fmt, *names, check=False).stdout.strip())
                    infra.docker("start", edge.proxy)
    finally:
        for name in infra.docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split():
            infra.docker("rm", "-f", "-v", name, check=False)
    return results


def render(results: dict[str, list[dict[str, Any]]], restarts: int, engine: str, keeper_cli: str) -> str:
    lines = [
        SECTION,
        "",
        f"dockerd ({engine}, {os.cpu_count()} cores) stopped and started again {restarts} times; after each",
        'restart, how each edge came back. "After the engine was back": from the moment `docker version`',
        "answers again (dockerd starts the containers it restores before it serves its API). Both edges",
        f"went through the same restarts. The keeper ran `docker:28-cli` as the tests build it ({keeper_cli}).",
        "Produced by `tests/e2e/bench_restart.py`:",
        "",
        "```",
        f"CUTOVER_E2E_RESTART_DOCKERD=1 .venv/bin/python -m tests.e2e.bench_restart --restarts {restarts} --write BENCHMARKS.md",
        "```",
        "",
        f"| edge | restarts | the proxy's start refused by the engine (the race) | down {WAIT_S:.0f} s after the engine was back | first answer after the engine was back, s (median; max) |",
        "|---|---|---|---|---|",
    ]
    for flow, title in FLOWS.items():
        rs = results[flow]
        times = [r["answered_after_s"] for r in rs if r["answered_after_s"] is not None]
        down = sum(1 for r in rs if r["answered_after_s"] is None)
        refused = sum(1 for r in rs if r["start_refused"])
        spread = f"{_median(times):.2f}; {max(times):.2f}" if times else "—"
        lines.append(f"| {title} | {len(rs)} | {refused} | {down} | {spread} |")
    lines += [
        "",
        "Why: the engine starts every container with a restart policy at once, in no order, so Caddy can",
        "start before the container whose network namespace it joins; the engine refuses that start and",
        "never tries it again, and the site stays down until someone starts it. The keeper starts it once",
        "the ports container runs. How often the race happens depends on the machine and its load; the",
        "two edges' counts of races differ by chance, not because of the keeper.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--write", type=Path, help="replace (or add) the section in this report, e.g. BENCHMARKS.md")
    args = parser.parse_args(argv)
    results = bench(args.restarts)
    keeper_cli = infra.docker("run", "--rm", "--network", "none", "docker:28-cli", "docker", "--version").stdout.strip()
    section = render(results, args.restarts, f"Docker {infra.ensure_engine().server_version}", keeper_cli)
    if args.write:
        write_section(args.write, section, SECTION)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
