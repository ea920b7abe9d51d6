"""Upgrading the proxy itself, side by side: the stop-first replacement any container bound to host ports
gets (what cutover did before, and what pulumi-docker does by default: stop, remove, create, start), against
cutover's (a new Caddy started in the network namespace of the container that holds the ports, beside the old
one, then the old one stopped; components/edge/proxy.py). The same app, the same Caddyfile (the program's, one
slot naming the app), the same load, one run; the e2e scenario tests/e2e/test_edge.py shows that the program
itself upgrades the proxy this way.

    .venv/bin/python -m tests.e2e.bench_proxy --runs 3 --write BENCHMARKS.md

writes its section ("## Upgrading the proxy") into the report, replacing the one there.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.edge.caddyfile import ADMIN_SOCKET, Route, render_caddyfile, slot_path
from components.edge.containers import PORTS_HOLD
from tests.e2e import infra
from tests.e2e.bench import APP, LABEL, NET, Load, _median, start_app
from tests.e2e.replay.stack import ensure_app_wheels

PORTS = "cutover-bench-ports"
SECTION = "## Upgrading the proxy"
FLOWS = {
    "stop-first": "stop-first: stop and remove the proxy, create and start the new one (bound to the host port itself)",
    "side-by-side": "cutover: the new proxy starts beside the old one in the ports container's namespace, then the old one stops",
}


def caddy_args(name: str, etc: Path) -> list[str]:
    return ["--name", name, "--label", LABEL, "--read-only", "--tmpfs", "/tmp", "-v", f"{etc}:/etc/caddy:ro",
            "--health-cmd", f"test -S {ADMIN_SOCKET}", "--health-interval", "1s"]  # fmt: skip


@contextlib.contextmanager
def edge_files() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cutover-bench-proxy-") as tmp:
        etc = Path(tmp) / "etc"
        (etc / "live").mkdir(parents=True)
        (etc / "Caddyfile").write_text(render_caddyfile(Route(slots=1, port=8000, grace_period_s=10)))
        (etc / slot_path(0).removeprefix("/etc/caddy/")).write_text("app")
        for path in (Path(tmp), etc, etc / "live"):
            path.chmod(0o755)
        yield etc


def stop_first(port: int, etc: Path, old: str, new: str) -> float:
    started = time.monotonic()
    infra.docker("stop", "-t", "30", old)
    infra.docker("rm", old)
    infra.docker("run", "-d", *caddy_args(new, etc), "--network", NET, "-p", f"127.0.0.1:{port}:80", "caddy:2")
    infra.wait_healthy(new)
    return time.monotonic() - started


def side_by_side(port: int, etc: Path, old: str, new: str) -> float:
    started = time.monotonic()
    infra.docker("run", "-d", *caddy_args(new, etc), "--network", f"container:{PORTS}", "caddy:2")
    infra.wait_healthy(new)
    infra.docker("stop", "-t", "30", old)
    infra.docker("rm", old)
    return time.monotonic() - started


def bench(runs: int) -> dict[str, list[dict[str, Any]]]:
    infra.ensure_base_images()
    ensure_app_wheels()
    image = infra.build_app_image("cutover-bench-proxy-app:1", version="1")
    results: dict[str, list[dict[str, Any]]] = {flow: [] for flow in FLOWS}
    infra.docker("network", "create", "--label", LABEL, NET)
    try:
        start_app(image, "1")
        with edge_files() as etc:
            for flow in FLOWS:
                port = infra.free_port()
                if flow == "stop-first":
                    current = "cutover-bench-proxy-0"
                    infra.docker("run", "-d", *caddy_args(current, etc), "--network", NET, "-p", f"127.0.0.1:{port}:80", "caddy:2")
                else:
                    infra.docker("run", "-d", "--name", PORTS, "--label", LABEL, "--network", NET, "-p", f"127.0.0.1:{port}:80",
                                 "caddy:2", *PORTS_HOLD)  # fmt: skip
                    current = "cutover-bench-proxy-0"
                    infra.docker("run", "-d", *caddy_args(current, etc), "--network", f"container:{PORTS}", "caddy:2")
                infra.wait_healthy(current)
                for run in range(1, runs + 1):
                    new = f"cutover-bench-proxy-{run}"
                    with Load(f"http://127.0.0.1:{port}/") as load:
                        took = (stop_first if flow == "stop-first" else side_by_side)(port, etc, current, new)
                        load.stop(settle=3.0)
                    results[flow].append({"upgrade_s": round(took, 1), **load.numbers()})
                    infra.log(f"{flow} run {run}: {results[flow][-1]}")
                    current = new
                infra.docker("rm", "-f", current, PORTS, check=False)
    finally:
        for name in infra.docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split():
            infra.docker("rm", "-f", "-v", name, check=False)
        infra.docker("network", "rm", NET, check=False)
        infra.docker("rmi", image, check=False)
        infra.docker("rm", "-f", APP, check=False)
    return results


def render(results: dict[str, list[dict[str, Any]]], runs: int) -> str:
    lines = [
        SECTION,
        "",
        "The proxy itself replaced by a new one (the same Caddy image here; a new image or version in",
        "practice), under the same load, with the program's Caddyfile. Produced by `tests/e2e/bench_proxy.py`:",
        "",
        "```",
        f".venv/bin/python -m tests.e2e.bench_proxy --runs {runs} --write BENCHMARKS.md",
        "```",
        "",
        "| flow | failed requests (median; each run) | failed keep-alive / new-connection (each run) | longest gap, s (median; each run) |",
        "|---|---|---|---|",
    ]
    for flow, title in FLOWS.items():
        rs = results[flow]
        failed = ", ".join(str(r["failed"]) for r in rs)
        kinds = ", ".join(f"{r['failed_keepalive']}/{r['failed_new_conn']}" for r in rs)
        gaps = ", ".join(f"{r['longest_gap_s']:.3f}" for r in rs)
        lines.append(
            f"| {title} | {_median([r['failed'] for r in rs]):g}; {failed} | {kinds} | {_median([r['longest_gap_s'] for r in rs]):.3f}; {gaps} |"
        )
    lines += [
        "",
        "Why: a stop-first replacement leaves nothing listening on the port from the moment the old proxy",
        "closes its listener until the new one has started; every request in that gap is refused, and",
        "the keep-alive connections of the old one are closed. Side by side, both proxies listen on the",
        "same port (Caddy sets SO_REUSEPORT; they share the network namespace of the container that",
        "holds the ports), so the kernel always has a listener to hand a connection to. The old proxy,",
        "told to stop, answers with `Connection: close` for 2 s (`shutdown_delay`), so keep-alive",
        "clients reconnect, to either proxy, before it closes its listener and its idle connections.",
        "What can still fail: a connection the old proxy had accepted just as it closed, or (over HTTPS)",
        "a handshake the new one took in its first moments, before it loaded the certificate: clients",
        "opening a new connection per request, at most 2 per upgrade here; none of the keep-alive ones.",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str, title: str = SECTION) -> None:
    """Replace the report's section `title` (up to the next `## `) with `section`, or add it at the end."""
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", type=Path, help="replace (or add) the section in this report, e.g. BENCHMARKS.md")
    args = parser.parse_args(argv)
    section = render(bench(args.runs), args.runs)
    if args.write:
        write_section(args.write, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
