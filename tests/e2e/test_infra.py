"""The e2e building blocks work for real: base images, the app image and its
runtime contract, the private registry, Docker over SSH, the load generator.

Needs a running Docker engine and root (sshd, debootstrap). Run:
    .venv/bin/pytest -m e2e tests/e2e -v
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.edge.containers import DOCKER_SOCKET
from tests.e2e import infra
from tests.e2e.loadgen import LoadGen

pytestmark = pytest.mark.e2e

HARDENED = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", "10001")
TOKEN = secrets.token_hex(4)
E2E_LABEL = ("--label", "org.cutover.e2e=test_infra")


# --------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def engine() -> infra.Engine:
    return infra.ensure_engine(start=True)


@pytest.fixture(scope="module")
def base_images(engine: infra.Engine) -> list[dict]:
    started = time.monotonic()
    result = infra.ensure_base_images()
    infra.log(f"base images ready in {time.monotonic() - started:.1f}s: {result}")
    return result


@pytest.fixture(scope="module")
def app_image(base_images: list[dict]) -> Iterator[tuple[str, str]]:
    """(image tag, version) of app/Dockerfile built offline."""
    version = f"e2e-{TOKEN}"
    tag = f"cutover-app:e2e-{TOKEN}"
    started = time.monotonic()
    infra.build_app_image(tag, version)
    infra.log(f"app image {tag} built in {time.monotonic() - started:.1f}s")
    yield tag, version
    infra.docker("rmi", tag, check=False)


def get_json(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http://127.0.0.1 URLs only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def host_port(container: str, port: int) -> int:
    out = infra.docker("port", container, f"{port}/tcp").stdout
    # e.g. "127.0.0.1:49153"
    return int(out.splitlines()[0].rsplit(":", 1)[1])


@contextlib.contextmanager
def app_container(image: str, *extra: str, env: dict[str, str] | None = None, hardened: bool = True) -> Iterator[tuple[str, str]]:
    """Run the app published on 127.0.0.1:<random>; yield (id, base URL)."""
    options = [*E2E_LABEL, "-p", "127.0.0.1::8000", *(HARDENED if hardened else ())]
    for key, value in (env or {}).items():
        options += ["-e", f"{key}={value}"]
    cid = infra.run_container(image, options=[*options, *extra])
    try:
        yield cid, f"http://127.0.0.1:{host_port(cid, 8000)}"
    finally:
        infra.remove_container(cid)


def inspect(container: str) -> dict:
    return json.loads(infra.docker("inspect", container).stdout)[0]


# --------------------------------------------------------------------------
# base images


def test_python_base_image_behaves_like_the_official_one(base_images: list[dict]) -> None:
    assert {r["image"] for r in base_images} == {"python:3.11-slim", "caddy:2", "docker:28-cli"}
    script = (
        "import sys, os, ssl, sysconfig, venv; "
        "print(sys.version_info[:2]); "
        "print(os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))"
    )
    out = infra.docker("run", "--rm", "--network", "none", "python:3.11-slim", "python", "-c", script).stdout.split()
    assert out == ["(3,", "11)", "False"], out
    # venv with pip, as the Dockerfile's build stage needs; pip, python3 on PATH
    out = infra.docker(
        "run",
        "--rm",
        "--network",
        "none",
        "python:3.11-slim",
        "sh",
        "-c",
        "python -m venv /tmp/v && /tmp/v/bin/pip --version && command -v python3 pip",
    ).stdout
    assert "python 3.11" in out and "/tmp/v/" in out, out
    default_cmd = infra.docker("image", "inspect", "--format", "{{json .Config.Cmd}}", "python:3.11-slim").stdout
    assert json.loads(default_cmd) == ["python3"]


def test_caddy_base_image_serves_and_answers_its_probe(base_images: list[dict]) -> None:
    config = json.loads(infra.docker("image", "inspect", "--format", "{{json .Config}}", "caddy:2").stdout)
    assert config["Cmd"] == ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
    assert "XDG_DATA_HOME=/data" in config["Env"] and "XDG_CONFIG_HOME=/config" in config["Env"]
    # default config, read-only root: serves :80 and its admin API answers
    # the probe the edge container's healthcheck uses (busybox wget)
    cid = infra.run_container("caddy:2", options=[*E2E_LABEL, "--network", "none", "--read-only", "--tmpfs", "/tmp"])
    try:
        deadline = time.monotonic() + 15
        probe = ["exec", cid, "wget", "-q", "-O", "/dev/null", "http://localhost:2019/config/"]
        while infra.docker(*probe, check=False).returncode != 0:
            assert time.monotonic() < deadline, infra.docker("logs", cid, check=False).stderr
            time.sleep(0.2)
        page = infra.docker("exec", cid, "wget", "-q", "-O", "-", "http://127.0.0.1:80/").stdout
        assert page.strip(), "default site served nothing"
        version = infra.docker("exec", cid, "caddy", "version").stdout
        m = re.match(r"v?2\.(\d+)\.", version)
        assert m and int(m[1]) >= 8, f"the switch needs Caddy 2.8 or newer ({{file.*}} placeholders), got {version}"
    finally:
        infra.remove_container(cid)


def test_docker_cli_base_image_reaches_the_engine_as_the_keeper_runs_it(base_images: list[dict], engine: infra.Engine) -> None:
    """The proxy keeper's image, run as components/edge/containers.py proxy_keeper_container runs it: no network,
    read-only, no capabilities, the engine's socket and DOCKER_HOST; its `sh` and `docker` answer."""
    out = infra.docker(
        "run", "--rm", *E2E_LABEL, "--network", "none", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges:true", "-v", f"{DOCKER_SOCKET}:{DOCKER_SOCKET}",
        "-e", f"DOCKER_HOST=unix://{DOCKER_SOCKET}", "docker:28-cli",
        "sh", "-c", "docker version --format '{{.Server.Version}}'",
    ).stdout  # fmt: skip
    assert out.strip() == engine.server_version


# --------------------------------------------------------------------------
# app image


def test_app_image_contract(app_image: tuple[str, str]) -> None:
    tag, version = app_image
    config = json.loads(infra.docker("image", "inspect", "--format", "{{json .Config}}", tag).stdout)
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "/app/healthcheck.py"]
    assert "8000/tcp" in config["ExposedPorts"]
    assert f"APP_VERSION={version}" in config["Env"]
    cmd = config["Cmd"]
    assert cmd[:2] == ["uvicorn", "main:app"] and not config.get("Entrypoint")
    assert cmd[cmd.index("--backlog") + 1] == "2048"
    assert "--timeout-graceful-shutdown" in cmd and "--proxy-headers" in cmd
    # no build leftovers (wheels, requirements) in the final image
    out = infra.docker("run", "--rm", "--network", "none", tag, "sh", "-c", "ls /app; echo --; ls /build 2>&1 || true").stdout.split()
    app_files = out[: out.index("--")]
    assert sorted(app_files) == ["bot.py", "healthcheck.py", "heartbeat.py", "main.py", "migrate.py", "worker.py"], out
    assert "No" in out[out.index("--") :], "no /build in the final image"


def test_app_runs_hardened_and_becomes_healthy(app_image: tuple[str, str]) -> None:
    tag, version = app_image
    with app_container(tag) as (cid, url):
        seconds = infra.wait_healthy(cid, timeout=30)
        infra.log(f"app healthy after {seconds:.1f}s")
        state = inspect(cid)
        # healthy by the image's own HEALTHCHECK (no override given)
        assert state["Config"]["Healthcheck"]["Test"] == ["CMD", "python", "/app/healthcheck.py"]
        assert any(entry["ExitCode"] == 0 for entry in state["State"]["Health"]["Log"])
        host = state["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert infra.docker("exec", cid, "id", "-u").stdout.strip() == "10001"

        assert get_json(f"{url}/health") == (200, {"status": "ok", "version": version})
        status, body = get_json(f"{url}/")
        assert status == 200 and body["version"] == version and body["hostname"] == cid[:12]
        started = time.monotonic()
        status, body = get_json(f"{url}/slow?seconds=0.4")
        assert status == 200 and body["version"] == version
        assert time.monotonic() - started >= 0.4

        # the root filesystem is read-only; /tmp is writable
        assert infra.docker("exec", cid, "sh", "-c", "echo x > /app/x", check=False).returncode != 0
        infra.docker("exec", cid, "sh", "-c", "echo x > /tmp/x")


def test_app_stops_gracefully_on_sigterm(app_image: tuple[str, str]) -> None:
    tag, _ = app_image
    with app_container(tag) as (cid, _url):
        infra.wait_healthy(cid, timeout=30)
        started = time.monotonic()
        infra.docker("stop", "--time", "20", cid)
        seconds = time.monotonic() - started
        infra.log(f"idle app stopped in {seconds:.2f}s")
        state = inspect(cid)["State"]
        assert state["ExitCode"] == 0, state
        assert seconds < 2.0
        logs = infra.docker("logs", cid).stderr
        assert "Shutting down" in logs and "Finished server process" in logs


def test_request_in_flight_survives_sigterm(app_image: tuple[str, str]) -> None:
    tag, version = app_image
    with app_container(tag) as (cid, url):
        infra.wait_healthy(cid, timeout=30)
        outcome: dict = {}

        def slow_request() -> None:
            try:
                outcome["response"] = get_json(f"{url}/slow?seconds=2", timeout=15)
            except Exception as exc:  # reported by the assertion below
                outcome["error"] = repr(exc)

        client = threading.Thread(target=slow_request)
        client.start()
        time.sleep(0.5)
        started = time.monotonic()
        infra.docker("stop", "--time", "20", cid)
        seconds = time.monotonic() - started
        client.join(timeout=20)
        assert outcome.get("response") == (200, {"version": version, "slept": 2.0, "hostname": cid[:12]}), outcome
        # the stop waited for the request (about 1.5 s), not for the 20 s kill
        assert 1.0 <= seconds < 10.0, seconds
        assert inspect(cid)["State"]["ExitCode"] == 0


def test_failing_health_is_reported_unhealthy(app_image: tuple[str, str]) -> None:
    tag, _ = app_image
    env = {"APP_FAIL_HEALTH": "1", "APP_VERSION": "refused-1"}
    with app_container(tag, env=env) as (cid, url):
        status, body = get_json(f"{url}/health") if _wait_http(url) else (None, None)
        assert status == 503 and body["version"] == "refused-1", body
        with pytest.raises(infra.InfraError, match="unhealthy"):
            infra.wait_healthy(cid, timeout=45)
        assert inspect(cid)["State"]["Health"]["Status"] == "unhealthy"


def _wait_http(url: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/", timeout=2):  # noqa: S310 - loopback URL
                return True
        except (OSError, ValueError):
            time.sleep(0.2)
    return False


def test_migration_command(app_image: tuple[str, str]) -> None:
    tag, version = app_image
    base = ["run", "--rm", "--network", "none", *HARDENED, tag]
    ok = infra.docker(*base, "python", "-m", "migrate")
    assert f"release {version}" in ok.stdout
    ok = infra.docker(*base[:-1], "-e", "APP_VERSION=v-override", tag, "python", "migrate.py")
    assert "release v-override" in ok.stdout
    failed = infra.docker(*base[:-1], "-e", "APP_FAIL_MIGRATION=true", tag, "python", "-m", "migrate", check=False)
    assert failed.returncode == 1
    assert "APP_FAIL_MIGRATION" in failed.stderr


# --------------------------------------------------------------------------
# registry


def test_registry_login_push_pull_by_digest(base_images: list[dict]) -> None:
    # an image of our own (unique config) so that the pull really fetches
    marker = f"org.cutover.e2e.push={TOKEN}"
    local = f"cutover-e2e-push:{TOKEN}"
    infra.run(["docker", "build", "-t", local, "-"], input=f"FROM python:3.11-slim\nLABEL {marker}\n")
    with infra.start_registry() as registry:
        api = f"http://{registry.address}/v2/"
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(api, timeout=5)
        assert anonymous.value.code == 401
        auth = b64encode(f"{registry.user}:{registry.password}".encode()).decode()
        request = urllib.request.Request(api, headers={"Authorization": f"Basic {auth}"})
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback URL
            assert response.status == 200

        ref = registry.push(local, "cutover/app", TOKEN)
        assert ref.startswith(f"{registry.address}/cutover/app@sha256:")
        infra.docker("rmi", local, f"{registry.address}/cutover/app:{TOKEN}")
        assert not infra.image_exists(ref)

        # without credentials the pull is refused
        with tempfile.TemporaryDirectory() as empty_config:
            refused = infra.docker("pull", ref, check=False, env={"DOCKER_CONFIG": empty_config})
        assert refused.returncode != 0
        assert not infra.image_exists(ref)

        registry.docker("pull", ref)
        labels = json.loads(infra.docker("image", "inspect", "--format", "{{json .Config.Labels}}", ref).stdout)
        assert labels["org.cutover.e2e.push"] == TOKEN
        infra.docker("rmi", ref, check=False)


# --------------------------------------------------------------------------
# Docker over SSH


def test_docker_over_ssh_with_pinned_host_key(engine: infra.Engine) -> None:
    with infra.start_sshd() as host:
        assert host.known_hosts_line.startswith(f"[127.0.0.1]:{host.port} ssh-ed25519 AAAA")
        who = host.ssh_run("id -un; id -nG").stdout.split()
        assert who[0] == "deploy" and "docker" in who[1:]

        # the same engine, reached as deploy through ssh: a container started
        # over ssh is seen by the local CLI
        name = f"cutover-e2e-ssh-{TOKEN}"
        host.docker("run", "-d", "--name", name, *E2E_LABEL, "--network", "none", "python:3.11-slim", "sleep", "30")
        try:
            listed = infra.run(["docker", "-H", host.url, "ps", "--format", "{{.Names}}"], env=host.docker_env()).stdout.split()
            assert name in listed
            assert infra.docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"
            version = host.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
            assert version == engine.server_version
        finally:
            infra.remove_container(name)

        # a different pinned key is refused (StrictHostKeyChecking yes)
        with tempfile.TemporaryDirectory() as tmp:
            other = Path(tmp) / "k"
            infra.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)])
            key = Path(f"{other}.pub").read_text().split()[:2]
            known = Path(tmp) / "known_hosts"
            known.write_text(f"[127.0.0.1]:{host.port} {key[0]} {key[1]}\n")
            refused = infra.run(
                ["ssh", "-F", str(host.ssh_config_path), "-o", f"UserKnownHostsFile={known}", host.alias, "true"], check=False
            )
            assert refused.returncode == 255
            assert "host key" in refused.stderr.lower(), refused.stderr


# --------------------------------------------------------------------------
# load generator


@contextlib.contextmanager
def app_behind_caddy(image: str) -> Iterator[str]:
    """The app on a private network behind the caddy:2 image; yield the
    proxy's URL on 127.0.0.1."""
    network = f"cutover-e2e-net-{TOKEN}"
    infra.docker("network", "create", *E2E_LABEL, network)
    with tempfile.TemporaryDirectory() as tmp:
        caddyfile = Path(tmp) / "Caddyfile"
        caddyfile.write_text("{\n\tadmin localhost:2019\n\tauto_https off\n}\n\n:80 {\n\treverse_proxy app:8000\n}\n")
        caddyfile.chmod(0o644)
        Path(tmp).chmod(0o755)
        containers: list[str] = []
        try:
            app = infra.run_container(image, options=[*E2E_LABEL, *HARDENED, "--network", network, "--network-alias", "app"])
            containers.append(app)
            proxy = infra.run_container(
                "caddy:2",
                options=[
                    *E2E_LABEL,
                    "--network",
                    network,
                    "--read-only",
                    "--tmpfs",
                    "/tmp",
                    "-v",
                    f"{caddyfile}:/etc/caddy/Caddyfile:ro",
                    "-p",
                    "127.0.0.1::80",
                    "--health-cmd",
                    "wget -q -O /dev/null http://localhost:2019/config/",
                    "--health-interval",
                    "1s",
                ],
            )
            containers.append(proxy)
            infra.wait_healthy(app, timeout=30)
            infra.wait_healthy(proxy, timeout=30)
            yield f"http://127.0.0.1:{host_port(proxy, 80)}"
        finally:
            for cid in containers:
                infra.remove_container(cid)
            infra.docker("network", "rm", network, check=False)


def test_loadgen_through_caddy_records_no_failure(app_image: tuple[str, str]) -> None:
    tag, version = app_image
    with app_behind_caddy(tag) as url:
        for keep_alive, seconds in ((True, 4.0), (False, 2.0)):
            gen = LoadGen(f"{url}/", threads=16, keep_alive=keep_alive, max_duration=30)
            gen.start()
            time.sleep(seconds)
            result = gen.stop()
            infra.log(f"loadgen keep_alive={keep_alive}: {result.summary()}")
            assert result.failed == 0, result.summary()
            assert result.total > 100, result.summary()
            assert [span.version for span in result.versions] == [version]
            assert result.longest_gap < 0.5, result.summary()
            assert not result.timed_out


def test_loadgen_sees_an_outage(app_image: tuple[str, str]) -> None:
    tag, version = app_image
    with app_container(tag) as (cid, url):
        infra.wait_healthy(cid, timeout=30)
        gen = LoadGen(f"{url}/health", threads=4, timeout=1.0, max_duration=30)
        gen.start()
        time.sleep(1.0)
        subprocess.run(["docker", "kill", cid], check=True, capture_output=True)
        killed_at = gen.elapsed()
        time.sleep(1.5)
        result = gen.stop()
        infra.log(f"loadgen across a kill: {result.summary()}")
        assert result.ok > 10 and result.failed > 0, result.summary()
        assert result.longest_gap >= 1.0, result.summary()
        assert all(r.end <= killed_at + 0.5 for r in result.records if r.ok)
        assert [span.version for span in result.versions] == [version]

    # nothing listens: every request fails, and says why
    gen = LoadGen(f"http://127.0.0.1:{infra.free_port()}/", threads=2, max_duration=0.5)
    gen.start()
    time.sleep(0.8)
    result = gen.stop()
    assert result.total > 0 and result.ok == 0
    assert set(result.errors) == {"connection refused"}, result.errors
    assert result.timed_out and result.longest_gap >= 0.5


# --------------------------------------------------------------------------
# How the program's two SSH clients reach the host (components/host/ssh.py)


def test_the_providers_ssh_logs_in_with_the_agent_and_the_inline_host_key(engine: infra.Engine) -> None:
    """The docker provider's ssh, as docker/cli's connection helper runs it with the program's options:
    it logs in with the key the agent holds and knows the host by the pinned line alone."""
    from components.config.model import HostConfig, Secret
    from components.host.ssh import docker_ssh_options, load_deploy_key
    from tests.e2e.replay.docker_api import DockerAPI, DockerAPIError

    with infra.start_sshd() as host, infra.ssh_agent() as machine, tempfile.TemporaryDirectory() as home:
        config = HostConfig(url=host.url, known_hosts=host.known_hosts_line, private_key=Secret(host.private_key))
        env = {**machine, "HOME": home}  # no ~/.ssh: nothing but the options and the agent
        api = DockerAPI(host.url, docker_ssh_options(config), env)
        with pytest.raises(DockerAPIError, match="Permission denied"):
            api.ping()  # the agent does not hold the key yet
        load_deploy_key(config, env)
        api.ping()
        assert api.call("GET", "/version")["Version"] == engine.server_version
        assert not list(Path(home).iterdir()), "ssh wrote nothing (no known_hosts, no key)"

        infra.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{home}/other"])
        impostor = Path(f"{home}/other.pub").read_text().split()[:2]
        for leftover in Path(home).iterdir():
            leftover.unlink()
        line = f"{host.known_hosts_line.split()[0]} {impostor[0]} {impostor[1]}"
        other = HostConfig(url=host.url, known_hosts=line, private_key=config.private_key)
        with pytest.raises(DockerAPIError, match=r"(?i)host key verification failed"):
            DockerAPI(host.url, docker_ssh_options(other), env).ping()


def test_an_rsa_host_key_pin_is_refused_by_the_command_runners_ssh(engine: infra.Engine) -> None:
    """pulumi-command offers the server only the pinned key's algorithm (remote/connection.go:85-98). For an
    RSA key that is SHA-1 `ssh-rsa`, which OpenSSH 8.8+ no longer accepts: this is why config refuses the pin."""
    from tests.e2e.replay.providers import CommandRunner, ProviderError

    with infra.start_sshd(host_key_type="rsa") as host, tempfile.TemporaryDirectory() as work:
        pinned = host.known_hosts_line.split(" ", 1)[1]
        assert pinned.startswith("ssh-rsa ")
        runner = CommandRunner(Path(work), {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"})
        try:
            connection = {"host": host.host, "port": host.port, "user": host.user, "privateKey": host.private_key, "hostKey": pinned}
            with pytest.raises(ProviderError, match="no matching host key type"):
                runner.run("command:remote:Command", {"connection": connection, "create": "true"}, "create")
        finally:
            runner.close()
    with infra.start_sshd() as host, tempfile.TemporaryDirectory() as work:
        runner = CommandRunner(Path(work), {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"})
        try:
            connection = {
                "host": host.host,
                "port": host.port,
                "user": host.user,
                "privateKey": host.private_key,
                "hostKey": host.known_hosts_line.split(" ", 1)[1],
            }
            assert runner.run("command:remote:Command", {"connection": connection, "create": "echo ok"}, "create")["stdout"] == "ok"
        finally:
            runner.close()
