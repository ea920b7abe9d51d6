"""`make setup HOST=ssh://root@...` against a fresh server: a container of the tests that runs only sshd, with no
Docker on it, as a new Debian machine from a provider (Debian bookworm from its packages, its own host keys,
root logging in with a key).

    1  setup installs Docker from the distribution, writes the engine's options, creates the deploy user with
       the key and prints the host key line, which is the server's own ed25519 key; ~/.ssh is left alone
    2  the deploy user logs in with the key, checked against that pinned line only, and its engine has
       live-restore on and rotates logs
    3  setup again: nothing to do, each step says so; the same key is printed
    4  a stack pointed at it with the two lines setup printed: a first deploy, then a release under load
       with 0 failed requests

The container runs with the flags that stand in for --privileged here (tests/e2e/cluster.py NODE_FLAGS), so the
dockerd that setup installs can run in it. What the tests add to it is not setup's: socat, so that its
127.0.0.1:<port> reaches the tests' registry through a relay (as the Swarm nodes do), and the edge's images,
loaded over the deploy user's login (no image registry is reachable here).

Run: .venv/bin/pytest -m e2e tests/e2e/test_setup.py -v
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import infra
from tests.e2e.bench import Load
from tests.e2e.cluster import DOCKERD_MOUNTS, NODE_FLAGS, UnixRelay, wait_for
from tests.e2e.conftest import record, tools_problem, unavailable
from tests.e2e.replay.engine import Engine
from tests.e2e.replay.stack import SECRET_KEYS, Stack, e2e_config, fake_sha, remove_leftovers

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LABEL = "cutover.test=setup"

_ENTRYPOINT = (
    r"""#!/bin/sh
# A fresh server: sshd only, root logging in with the key in $CUTOVER_ROOT_KEY.
set -eu
if [ "$#" -gt 0 ]; then exec "$@"; fi
"""
    + DOCKERD_MOUNTS
    + r"""if [ -n "${CUTOVER_REGISTRY_PORT:-}" ]; then
    # the tests' registry, on the host's loopback, at the same address here (tests/e2e/cluster.py UnixRelay)
    socat "TCP-LISTEN:$CUTOVER_REGISTRY_PORT,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$CUTOVER_REGISTRY_SOCKET" &
fi
# keys of its own, as a new machine makes on its first boot (the image's were made once, at its build)
rm -f /etc/ssh/ssh_host_*
ssh-keygen -A >/dev/null
install -d -m 0700 /root/.ssh
printf '%s\n' "$CUTOVER_ROOT_KEY" > /root/.ssh/authorized_keys
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e
"""
)

FRESH_SERVER_STANDIN = infra.StandIn(
    name="cutover-fresh-server:bookworm",
    # what a provider's minimal Debian image has that matters here: sshd, apt, CA certificates; no Docker
    packages=("openssh-server", "ca-certificates", "procps", "iproute2", "socat"),
    changes=(
        f"ENV PATH={infra._STANDIN_PATH}",
        "VOLUME /var/lib/docker",  # overlay2 for the dockerd setup installs: not on the container's own overlay
        'ENTRYPOINT ["/usr/local/bin/cutover-fresh-server"]',
    ),
    script="""
mkdir -p "$ROOT"/usr/local/bin
cat > "$ROOT"/usr/local/bin/cutover-fresh-server <<'END_OF_ENTRYPOINT'
"""
    + _ENTRYPOINT
    + """END_OF_ENTRYPOINT
chmod 0755 "$ROOT"/usr/local/bin/cutover-fresh-server
"""
    + infra._TRIM,
    probe=("sh", "-c", "command -v sshd ssh-keygen apt-get && ! command -v docker && ! command -v dockerd"),
)


@dataclasses.dataclass
class FreshServer:
    name: str
    port: int
    http_port: int  # published as the same port: the edge setup's engine runs will listen there
    key: Path  # the client's private key (root's and, after setup, the deploy user's)
    env: dict[str, str]  # an agent holding it, and a HOME of its own
    registry: infra.Registry

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return infra.docker("exec", self.name, *args, check=check)

    def host_key(self) -> str:
        return " ".join(self.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2])

    def setup(self) -> subprocess.CompletedProcess[str]:
        command = ["make", "-s", "setup", f"HOST=ssh://root@127.0.0.1:{self.port}", f"KEY={self.key}.pub"]
        return subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=1200, check=False)

    def as_deploy(self, pinned: str, script: str, stdin: Any = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A login as the deploy user that trusts only the pinned line (stdin: a file or pipe for the script)."""
        known = Path(self.env["HOME"]) / "pinned"
        known.write_text(pinned + "\n")
        options = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}"]
        command = ["ssh", *options, "-p", str(self.port), "-l", "deploy", "127.0.0.1", script]
        return subprocess.run(command, stdin=stdin, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def server(docker_engine: infra.Engine, e2e_results: dict[str, Any]) -> Iterator[FreshServer]:
    problem = tools_problem("ssh", "ssh-keygen", "ssh-agent", "ssh-add", "make", root=True)
    if problem:
        unavailable(problem)
    base = infra.ensure_base_images(standins=(FRESH_SERVER_STANDIN,))[0]
    e2e_results.setdefault("timings", {})["fresh_server_image"] = base["source"]
    infra.ensure_base_images()  # the edge's images and the app's base, for the deploy of scenario 4
    name = f"cutover-fresh-server-{secrets.token_hex(3)}"
    with (
        tempfile.TemporaryDirectory(prefix="cutover-setup-") as tmp,
        infra.ssh_agent() as machine,
        infra.start_registry() as registry,
    ):
        home = Path(tmp) / "home"
        home.mkdir()
        key = Path(tmp) / "id_ed25519"
        infra.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cutover-e2e-setup", "-f", str(key)])
        env = {**machine, "HOME": str(home)}
        infra.run(["ssh-add", "-q", str(key)], env=env)
        port, http_port = infra.free_port(), infra.free_port()
        shared = Path(tmp) / "shared"
        shared.mkdir()
        registry_port = int(registry.address.rsplit(":", 1)[1])
        relay = UnixRelay(shared / "registry.sock", ("127.0.0.1", registry_port))
        infra.docker("volume", "create", "--label", LABEL, f"{name}-docker")
        try:
            infra.docker(
                "run", "-d", "--name", name, "--label", LABEL, *NODE_FLAGS,
                "-v", f"{name}-docker:/var/lib/docker", "-v", f"{shared}:/cutover-host",
                "-p", f"127.0.0.1:{port}:22", "-p", f"127.0.0.1:{http_port}:{http_port}",
                "-e", f"CUTOVER_ROOT_KEY={(Path(f'{key}.pub')).read_text().strip()}",
                "-e", f"CUTOVER_REGISTRY_PORT={registry_port}", "-e", "CUTOVER_REGISTRY_SOCKET=/cutover-host/registry.sock",
                FRESH_SERVER_STANDIN.name,
            )  # fmt: skip
            probe = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
            wait_for(
                lambda: subprocess.run([*probe, "-p", str(port), "root@127.0.0.1", "true"], env=env, capture_output=True, check=False).returncode == 0,
                60, "the fresh server's sshd answers root's key",
            )  # fmt: skip
            yield FreshServer(name, port, http_port, key, env, registry)
        finally:
            relay.close()
            infra.docker("rm", "-f", "-v", name, check=False)
            infra.docker("volume", "rm", "-f", f"{name}-docker", check=False)


def _pinned(out: str) -> str:
    lines = [line for line in out.splitlines() if "pulumi config set --path host.knownHosts" in line]
    assert len(lines) == 1, out
    return lines[0].split("host.knownHosts ", 1)[1].strip().strip("'")


def test_1_setup_installs_docker_and_the_deploy_user_and_prints_the_key_to_pin(server: FreshServer, e2e_results: dict[str, Any]) -> None:
    assert server.exec("sh", "-c", "command -v dockerd docker", check=False).returncode != 0, "a fresh server has no Docker"
    known_hosts = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh" / "known_hosts"  # where ssh itself keeps them
    before = known_hosts.read_text() if known_hosts.exists() else None
    started = time.monotonic()
    done = server.setup()
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    said = [line for line in done.stdout.splitlines() if line.startswith("setup: ")]
    record(e2e_results, "setup_fresh_server", {"setup_s": round(seconds, 1), "said": said})
    pinned = _pinned(done.stdout)
    assert pinned == f"[127.0.0.1]:{server.port} {server.host_key()}", "the key pinned is the server's own ed25519 key"
    assert f"pulumi config set --path host.url ssh://deploy@127.0.0.1:{server.port}" in done.stdout
    assert "installing docker.io from the distribution's packages" in done.stdout and "created user deploy" in done.stdout
    # the machine's own known_hosts is not touched: the first connection's key went to a file setup removed
    assert (known_hosts.read_text() if known_hosts.exists() else None) == before


def test_2_the_deploy_user_reaches_an_engine_with_live_restore_and_log_rotation(server: FreshServer) -> None:
    pinned = f"[127.0.0.1]:{server.port} {server.host_key()}"
    info = server.as_deploy(pinned, "docker info --format '{{json .}}'")
    assert info.returncode == 0, info.stderr
    engine = json.loads(info.stdout)
    assert engine["LiveRestoreEnabled"] is True and engine["LoggingDriver"] == "json-file", engine
    config = json.loads(server.exec("cat", "/etc/docker/daemon.json").stdout)
    assert config["log-opts"] == {"max-size": "10m", "max-file": "3"} and config["live-restore"] is True
    groups = server.as_deploy(pinned, "id -nG").stdout.split()
    assert "docker" in groups and "sudo" not in groups, groups
    # a host key other than the pinned one is refused: the pin is what the login trusts
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG90aGVyb3RoZXJvdGhlcm90aGVyb3RoZXJvdGhlcjA"
    refused = server.as_deploy(f"[127.0.0.1]:{server.port} {other}", "true")
    assert refused.returncode != 0 and "Host key verification failed" in refused.stderr, refused.stderr


def test_3_setup_again_finds_everything_done(server: FreshServer) -> None:
    done = server.setup()
    assert done.returncode == 0, done.stdout + done.stderr
    for said in (
        "already sets live-restore and log rotation",
        "Docker is installed",
        "user deploy exists",
        "deploy already logs in with that key",
    ):
        assert said in done.stdout, done.stdout
    assert _pinned(done.stdout) == f"[127.0.0.1]:{server.port} {server.host_key()}"
    keys = server.exec("cat", "/home/deploy/.ssh/authorized_keys").stdout.splitlines()
    assert len(keys) == 1, keys


def test_4_a_stack_pointed_at_it_deploys_and_releases_under_load(server: FreshServer, e2e_results: dict[str, Any]) -> None:
    done = server.setup()
    assert done.returncode == 0, done.stdout + done.stderr
    url = next(line.split("host.url ", 1)[1].strip() for line in done.stdout.splitlines() if "--path host.url " in line)
    pinned = _pinned(done.stdout)
    # the edge's images: no image registry is reachable here, so they go in as an operator would carry them
    save = subprocess.Popen(["docker", "save", "caddy:2", "docker:28-cli"], stdout=subprocess.PIPE)
    load = server.as_deploy(pinned, "docker load -q", stdin=save.stdout, timeout=600)
    save.wait(timeout=60)
    assert load.returncode == 0 and save.returncode == 0, load.stderr
    registry = server.registry
    config = e2e_config(
        ssh_url=url, known_hosts=pinned, private_key=server.key.read_text(), registry=registry.address,
        registry_user=registry.user, registry_password=registry.password, http_port=server.http_port, migrations=False,
    )  # fmt: skip
    config["proxy"].pop("bindAddress")  # every address of the server: its port is published from the container's
    engine = Engine(env=server.env, log=infra.log)
    stack = Stack(engine, config, SECRET_KEYS, name="fresh")
    salt = secrets.token_hex(4)
    site = f"http://127.0.0.1:{server.http_port}/"
    try:
        first = stack.up(sha=fake_sha("v1", salt))
        status, body = infra.get_json(site + "health")
        assert status == 200 and body.get("version") == stack.outputs["release"]["tag"], body
        with Load(site) as traffic:
            second = stack.up(sha=fake_sha("v2", salt))
            res = traffic.stop()
        record(
            e2e_results,
            "setup_then_release",
            {**traffic.numbers(), "first_deploy_s": round(first.duration, 1), "deploy_s": round(second.duration, 1)},
        )
        assert {r.version for r in res.records if r.ok} >= {stack.outputs["release"]["tag"]}, res.summary()
        traffic.assert_nothing_failed()
    finally:
        remove_leftovers(engine, "fresh")
