"""Bringing your own app: an image with no Python in it goes through releases on a real Docker engine, under load.

examples/static-app is busybox's httpd serving files (busybox:1.35, a stand-in built from Debian's
busybox-static when none can be pulled): no interpreter, no JSON on /health. The stack sets only what
README's "Bring your own app" says to set (the build context); the health probe is the program's default
(components/config/model.py default_probe, which finds busybox's wget) and the verification knows the
new containers answered by the header the proxy's verify listener adds (components/edge/caddyfile.py
UPSTREAM_HEADER), not by a version in the body. Applied by tests/e2e/replay like the release scenarios:

    1  first deploy of v1: the containers are healthy by the default probe; the image has no python
    2  v1 -> v2 under load: 0 failed requests, v2 answers once switched to
    3  a v3 whose /health is missing (a 404 from the app): refused before the switch, v2 keeps answering

busybox's httpd answers one request per connection and listens with a backlog of 9 (busybox
networking/httpd.c openServer, `xlisten(n, 9)`), so the proxy opens a new connection to it for every
request, and more clients at once than the backlog overflow its accept queue whenever its one process is
slow to accept: Linux then drops the connection's last handshake packet and the request waits for a
retransmission, seconds at worst, whatever the release does. The load here is therefore sized to the
app (CLIENTS below: fewer connections at once than the backlog), and each scenario checks, from the
serving containers' own network counters, that the app's queue never overflowed.

Run: .venv/bin/pytest -m e2e tests/e2e/test_own_app.py -v
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import infra
from tests.e2e.bench import Load
from tests.e2e.conftest import record, tools_problem, unavailable
from tests.e2e.replay.engine import Engine, UpdateFailedError
from tests.e2e.replay.stack import SECRET_KEYS, Stack, e2e_config_on, fake_sha, remove_leftovers, remove_stack_objects

pytestmark = pytest.mark.e2e

STACK = "own"
# keep-alive and new-connection clients: with the health probe and the proxy's checks, fewer connections at
# once than busybox httpd's backlog of 9 (the bench's default of 16 + 4 overflowed it 7 to 38 times a release)
CLIENTS = {"threads": 5, "fresh_threads": 2}


@dataclasses.dataclass
class OwnApp:
    stack: Stack
    engine: Engine
    registry: infra.Registry
    port: int
    salt: str

    def sha(self, label: str) -> str:
        return fake_sha(label, self.salt)

    def up(self, label: str, **kwargs: Any) -> Any:
        return self.stack.up(sha=self.sha(label), **kwargs)

    def url(self, path: str = "/version.json") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def tag(self) -> str:
        return str(self.stack.outputs["release"]["tag"])


@pytest.fixture(scope="module")
def own(docker_engine: infra.Engine, e2e_results: dict[str, Any]) -> Iterator[OwnApp]:
    problem = tools_problem("docker-registry", "htpasswd", "sshd", "ssh", "ssh-keygen", "ssh-agent", "ssh-add", root=True)
    if problem:
        unavailable(problem)
    infra.ensure_base_images()  # the edge's images
    base = infra.ensure_base_images(standins=(infra.BUSYBOX_STANDIN,))[0]
    e2e_results.setdefault("timings", {})["busybox_image"] = base["source"]
    with infra.start_registry() as registry, infra.start_sshd() as host, infra.ssh_agent() as machine:
        remove_stack_objects(STACK)  # what an interrupted run left
        engine = Engine(env=machine, log=infra.log)
        port = infra.free_port()
        config = e2e_config_on(registry, host, port, migrations=False)
        # what a team bringing this app sets: where it is; the rest are the program's defaults and the e2e timings
        config["image"] = {
            **config["image"],
            "repository": f"{registry.address}/cutover/static",
            "context": "./examples/static-app",
            "buildArgs": {},
        }
        env = OwnApp(Stack(engine, config, SECRET_KEYS, name=STACK), engine, registry, port, secrets.token_hex(4))
        try:
            yield env
        finally:
            remove_leftovers(engine, STACK)
            images = infra.docker("images", "--format", "{{.Repository}}:{{.Tag}}", f"{registry.address}/cutover/static", check=False)
            for ref in images.stdout.split():
                infra.docker("rmi", ref, check=False)


def _web() -> list[dict[str, Any]]:
    ids = infra.docker("ps", "-q", "--filter", f"label=cutover.stack={STACK}", "--filter", "label=cutover.role=web").stdout.split()
    return json.loads(infra.docker("inspect", *ids).stdout) if ids else []


def _listen_overflows(container: str) -> int:
    """Connections the container's accept queue had no room for: TcpExt ListenOverflows of its network
    namespace, which /proc/net/netstat gives from inside it."""
    lines = infra.docker("exec", container, "cat", "/proc/net/netstat").stdout.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    raise AssertionError(f"no TcpExt line in {container}'s /proc/net/netstat: {lines}")


def _serving_overflows(tag: str) -> dict[str, int]:
    """ListenOverflows of each web container of the release `tag` (a refused release's stay, unrouted)."""
    names = [c["Name"].lstrip("/") for c in _web() if c["Config"]["Labels"].get("cutover.release") == tag]
    return {name: _listen_overflows(name) for name in names}


def test_1_an_image_with_no_python_is_released_with_the_default_probe(own: OwnApp) -> None:
    own.up("v1")
    status, body = infra.get_json(own.url())
    assert status == 200 and body == {"version": own.tag}, body
    web = _web()
    assert len(web) == 2 and all(c["State"]["Health"]["Status"] == "healthy" for c in web), [c["State"] for c in web]
    assert web[0]["Config"]["Healthcheck"]["Test"][0] == "CMD-SHELL", "the program's default probe, not one the image brings"
    image = web[0]["Image"]
    no_python = infra.docker("run", "--rm", "--entrypoint", "sh", image, "-c", "command -v python3 || command -v python", check=False)
    assert no_python.returncode != 0 and not no_python.stdout.strip(), no_python.stdout
    plain = infra.docker("exec", web[0]["Name"].lstrip("/"), "cat", "/www/health").stdout
    assert plain.strip() == "ok", "the health answer is plain text, no JSON, no version"


def test_2_a_release_of_it_under_load_drops_nothing(own: OwnApp, e2e_results: dict[str, Any]) -> None:
    v1 = own.tag
    with Load(own.url(), **CLIENTS) as load:
        result = own.up("v2")
        res = load.stop()
    v2 = own.tag
    switch = result.step("switch-traffic")
    assert switch is not None and switch.ok, result.actions()
    said = next(a for a in own.engine.state.values() if a.name == "switch-traffic").outputs["stdout"]
    assert "verified through the proxy" in said and "X-Cutover-Upstream: " in said, "the check ran, and passed on the header"
    # the deploy output notes an engine without live-restore (this one's setting, as `docker info` gives it)
    off = infra.docker("info", "--format", "{{.LiveRestoreEnabled}}").stdout.strip() == "false"
    noted = next(a for a in own.engine.state.values() if a.name == "switch-traffic").outputs["stderr"]
    assert ("live-restore is off" in noted) is off, noted
    switched = load.rel(switch.end)
    overflows = _serving_overflows(v2)
    record(
        e2e_results,
        "own_app_v1_to_v2",
        {**load.numbers(), "deploy_s": round(result.duration, 1), "listen_overflows": sum(overflows.values())},
    )
    assert len(overflows) == 2 and not any(overflows.values()), f"the load outgrew the app's accept queue: {overflows}"
    assert v1 != v2 and {r.version for r in res.records if r.ok and r.start > switched} == {v2}, res.summary()
    load.assert_nothing_failed()


def test_3_a_release_without_its_health_answer_is_refused(own: OwnApp, e2e_results: dict[str, Any]) -> None:
    before = own.stack.outputs
    # /health gone: the app answers 404, the default probe's wget exits non-zero
    broken = {"healthcheck": {"path": "/missing"}, "web": {"waitTimeout": "15s"}}
    with Load(own.url(), **CLIENTS) as load:
        with pytest.raises(UpdateFailedError):
            own.up("v3", overrides=broken)
        res = load.stop()
    overflows = _serving_overflows(before["release"]["tag"])
    record(e2e_results, "own_app_unhealthy_refused", {**load.numbers(), "listen_overflows": sum(overflows.values())})
    assert len(overflows) == 2 and not any(overflows.values()), f"the load outgrew the app's accept queue: {overflows}"
    assert own.stack.outputs == before
    assert {r.version for r in res.records if r.ok} == {before["release"]["tag"]}, res.summary()
    load.assert_nothing_failed()
