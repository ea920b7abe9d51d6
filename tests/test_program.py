"""The program's resources and the dependency edges that make a release drop no request."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.config.load import parse_config
from components.config.model import default_probe
from components.edge.caddyfile import UPSTREAM_HEADER, VERIFY_PORT, Route, render_caddyfile
from components.host.engine import live_restore_note
from components.release.go_live import Verification, go_live_script, switch_steps, verify_steps
from tests.conftest import full_config
from tests.harness import ProgramFailedError, ProgramRun, Registration, run_program

CONTAINER = "docker:index/container:Container"
SECRETS = ["app-secret-for-tests", "pg-password-for-tests", "redis-password-for-tests", "ghcr-token-for-tests", "OPENSSH PRIVATE KEY"]


def web_containers(run: ProgramRun) -> list[Registration]:
    """The web role's containers (by their label: the proxy's resource is named after the stack too)."""
    return [r for r in run.of_type(CONTAINER) if {"label": "cutover.role", "value": "web"} in (r.inputs.get("labels") or [])]


def commands(run: ProgramRun, name: str) -> Registration:
    found = [r for r in run.registrations if r.type.startswith("command:") and r.name == name]
    assert len(found) == 1, [r.name for r in run.registrations]
    return found[0]


@pytest.fixture(scope="module")
def full_run() -> ProgramRun:
    raw, secrets = full_config()
    return run_program(raw, secrets, stack="prod")


def test_dev_stack_registers_the_whole_sequence_locally(dev: tuple[dict[str, Any], set[str]]) -> None:
    run = run_program(*dev)
    image = run.one("docker:index/image:Image")
    assert image.inputs["skipPush"] is True and "registry" not in image.inputs
    assert image.inputs["imageName"].startswith("cutover/web:")
    provider = run.one("pulumi:providers:docker")
    assert provider.inputs["host"] == "unix:///var/run/docker.sock" and "sshOpts" not in provider.inputs
    assert {r.name for r in run.registrations if r.type == "command:local:Command"} == {
        "switch-traffic",
        "housekeeping-prune-images",
    }, "the local engine's build cache is not pruned unless the stack asks for it"
    assert run.one("docker:index/image:Image").outputs["repoDigest"].startswith("sha256:")
    web = web_containers(run)[0]
    assert web.inputs["image"] == run.one("docker:index/remoteImage:RemoteImage", "web-image").outputs["imageId"]
    remote = run.one("docker:index/remoteImage:RemoteImage", "web-image")
    assert remote.inputs["name"].startswith("sha256:"), "dev runs the built image by its ID, so a rebuild is a new image"
    assert run.agent_checks == []
    assert len(web_containers(run)) == 1
    assert run.outputs["url"] == "http://localhost:8080"
    assert not [r for r in run.registrations if r.type.startswith("github:")]


def test_prod_stack_uses_ssh_with_pinned_host_key_and_pushes(prod: tuple[dict[str, Any], set[str]]) -> None:
    run = run_program(*prod, stack="prod")
    provider = run.one("pulumi:providers:docker")
    assert provider.inputs["host"] == "ssh://deploy@203.0.113.10:22"
    opts = json.loads(provider.inputs["sshOpts"])
    assert "StrictHostKeyChecking=yes" in opts and "StrictHostKeyChecking=no" not in opts
    # the pinned key travels inline; no option names a file a run of the program would have to write
    assert "KnownHostsCommand=/bin/echo 203.0.113.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTests" in opts
    assert "UserKnownHostsFile=/dev/null" in opts and "GlobalKnownHostsFile=/dev/null" in opts
    assert not any(o.startswith(("IdentityFile", "-i")) or o == "-i" for o in opts)
    assert not any("PRIVATE KEY" in o for o in opts), "the key itself never travels in provider options"
    assert run.agent_checks == ["ssh://deploy@203.0.113.10:22"], "the program looks for the key in the ssh agent"
    switch = commands(run, "switch-traffic")
    assert switch.type == "command:remote:Command"
    connection = switch.inputs["connection"]
    assert connection["hostKey"] == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTests"
    assert (connection["user"], connection["host"], connection["port"]) == ("deploy", "203.0.113.10", 22)
    assert "connection" in switch.secret_inputs
    image = run.one("docker:index/image:Image")
    assert image.inputs["skipPush"] is False and image.inputs["registry"]["server"] == "ghcr.io"
    assert "registry" in image.secret_inputs
    assert "cacheFrom" not in image.inputs["build"], "a first deploy has nothing to cache from"


def test_the_sequence_migration_web_switch(full_run: ProgramRun) -> None:
    migrate = commands(full_run, "web-migrate")
    switch = commands(full_run, "switch-traffic")
    pulled = full_run.one("docker:index/remoteImage:RemoteImage", "web-image")
    webs = web_containers(full_run)
    assert len(webs) == 3
    backup = commands(full_run, "web-backup")  # the database's dump comes first (tests/test_upkeep.py)
    assert migrate.depends_on(backup) and backup.depends_on(pulled)
    for accessory in (full_run.one(CONTAINER, "postgres"), full_run.one(CONTAINER, "redis")):
        assert backup.depends_on(accessory)
    for web in webs:
        assert web.depends_on(migrate), "no web container starts before the migration exits 0"
        assert switch.depends_on(web), "the switch waits for every new container to be healthy"
    assert switch.depends_on(full_run.one(CONTAINER, "web-prod-proxy")), "the switch runs in the proxy that serves"
    assert not migrate.depends_on(switch) and not webs[0].depends_on(switch)
    # switching and verifying are one step: a failed check is a failed, unrecorded step
    assert not [r for r in full_run.registrations if r.name in ("switch-route", "switch-verify")]


def test_web_containers_are_created_before_the_old_ones_go(full_run: ProgramRun) -> None:
    for web in web_containers(full_run):
        assert "name" not in web.inputs, "a fixed name would force delete-before-replace"
        assert "ports" not in web.inputs, "only the proxy binds host ports"
        # the provider asks for delete-before-replace on every container; the program overrides it
        assert web.options["deleteBeforeReplace"] is False and web.options["deleteBeforeReplaceDefined"] is True
        assert web.options["replaceOnChanges"] == ["*"], "never an in-place update, never an init error adopted"
        assert web.options["ignoreChanges"] == ["memorySwap"]
        assert web.inputs["wait"] is True and web.inputs["waitTimeout"] == 120
        assert web.inputs["healthcheck"]["tests"] == ["CMD-SHELL", default_probe("http://127.0.0.1:8000/health")]
        assert web.inputs["image"].startswith("sha256:"), "containers run the pulled digest's image ID"
    bound = [r.name for r in full_run.of_type(CONTAINER) if r.inputs.get("ports")]
    assert bound == ["proxy-ports"]
    ports = full_run.one(CONTAINER, "proxy-ports")
    assert [p["external"] for p in ports.inputs["ports"]] == [80, 443]


def test_a_new_proxy_starts_beside_the_old_one_on_the_same_ports(full_run: ProgramRun) -> None:
    ports, caddy = full_run.one(CONTAINER, "proxy-ports"), full_run.one(CONTAINER, "web-prod-proxy")
    # the ports container holds the ports and the edge network, runs only sh, and a new proxy image leaves it be
    assert ports.inputs["name"] == "web-prod-ports" and ports.inputs["command"][0] == "sh"
    assert ports.inputs["networksAdvanced"] == [{"name": "web-prod-edge"}]
    assert ports.options["ignoreChanges"] == ["image"] and ports.options["deleteBeforeReplace"] is True
    # named `proxy-container` before: the alias, under the same parent (the EdgeProxy) and type, makes the engine
    # take that resource for this one, so the live container stays (tests/test_real_engine.py shows it on the engine)
    assert ports.options["aliases"] == [{"name": "proxy-container", "type": "", "parent": "", "noParent": False}]
    assert ports.parent == full_run.one("cutover:index:EdgeProxy", "proxy").urn
    # Caddy in its network namespace, named by Pulumi (anew on a replacement), created before the old one goes
    assert caddy.inputs["networkMode"] == f"container:{ports.id}"
    assert "name" not in caddy.inputs and "ports" not in caddy.inputs and "networksAdvanced" not in caddy.inputs
    assert caddy.outputs["name"].startswith("web-prod-proxy-")
    assert caddy.options["deleteBeforeReplace"] is False and caddy.options["deleteBeforeReplaceDefined"] is True
    assert caddy.depends_on(ports)
    assert caddy.inputs["healthcheck"]["tests"][-1].startswith("test -S /tmp/caddy-admin.sock")
    text = render_caddyfile(Route(slots=2, port=8000))
    # its admin socket is its own; stopping, it closes every connection it answers on, for 2 s, then stops
    assert "admin unix//tmp/caddy-admin.sock" in text and "shutdown_delay 2s" in text
    site = text[text.index(":80 {") : text.index(f"http://:{VERIFY_PORT}")]
    assert "@stopping vars {http.shutting_down} true" in site and "header @stopping Connection close" in site


def test_a_keeper_starts_the_proxy_the_engine_failed_to_start(full_run: ProgramRun) -> None:
    keeper = full_run.one(CONTAINER, "proxy-keeper")
    image = full_run.one("docker:index/remoteImage:RemoteImage", "proxy-keeper-image")
    i = keeper.inputs
    assert image.inputs["name"] == "docker:28-cli" and i["image"] == image.outputs["imageId"]
    # nothing it depends on can be missing when the engine starts it: no network, only the engine's socket
    assert i["name"] == "web-prod-proxy-keeper" and i["networkMode"] == "none" and "networksAdvanced" not in i
    assert i["volumes"] == [{"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock"}]
    assert i["envs"] == ["DOCKER_HOST=unix:///var/run/docker.sock"]
    assert i["restart"] == "unless-stopped" and i["readOnly"] is True and i["capabilities"] == {"drops": ["ALL"]}
    assert keeper.options["deleteBeforeReplace"] is True
    assert i["command"][:2] == ["sh", "-c"]
    script = i["command"][2]
    subprocess.run(["sh", "-n", "-c", script], check=True)  # valid sh
    # asks about the ports container by name, then lists this stack's stopped proxies only
    assert "docker inspect -f '{{.State.Running}}' web-prod-ports" in script
    filters = re.findall(r"--filter ([^ )]+)", script)
    assert sorted(filters) == sorted(
        ["label=cutover.app=web", "label=cutover.stack=prod", "label=cutover.role=proxy", "status=exited", "status=created"]
    )
    # and starts one only when the engine refused its start because the ports container was not running
    assert "docker inspect -f '{{.State.Error}}' \"$id\"" in script
    assert '*"cannot join network"*|*"is restarting, wait until the container is running"*)' in script
    assert script.count("docker start") == 1


def test_the_keeper_uses_the_socket_host_url_names(dev: tuple[dict[str, Any], set[str]]) -> None:
    raw, secrets = dev
    raw = json.loads(json.dumps(raw))
    raw["host"]["url"] = "unix:///run/user/1000/docker.sock"  # rootless Docker, on this machine
    keeper = run_program(raw, secrets).one(CONTAINER, "proxy-keeper")
    assert keeper.inputs["volumes"] == [{"hostPath": "/run/user/1000/docker.sock", "containerPath": "/var/run/docker.sock"}]


def test_web_containers_are_hardened(full_run: ProgramRun) -> None:
    for web in web_containers(full_run):
        i = web.inputs
        assert i["user"] == "10001:10001"
        assert i["readOnly"] is True and "/tmp" in i["tmpfs"]
        assert i["securityOpts"] == ["no-new-privileges:true"]
        assert i["capabilities"] == {"drops": ["ALL"]}
        assert i["memory"] == 512 and i["memorySwap"] == 512
        assert i["cpus"] == "1.0", "sent as the provider reads it back, or it replaces the containers every time"
        assert i["healthcheck"]["interval"] == "2s" and i["healthcheck"]["startPeriod"] == "10s"
        assert i["restart"] == "unless-stopped"
        assert i["logDriver"] == "json-file" and i["logOpts"] == {"max-size": "10m", "max-file": "3"}
        assert i["stopSignal"] == "SIGTERM" and i["stopTimeout"] == 30 and i["destroyGraceSeconds"] == 30
        labels = {x["label"]: x["value"] for x in i["labels"]}
        assert labels["cutover.app"] == "web" and labels["cutover.role"] == "web"
        assert labels["cutover.release"] == labels["cutover.git-sha"] == "0123456789abcdef0123456789abcdef01234567"


def test_no_component_reveals_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the config is parsed, every secret reaches the resources as its Output (Secret.output), never through
    reveal: a reveal after the parse fails the program. The deploy key's load into the ssh agent, which needs the
    plain key and is outside the resources, is the harness's stand-in here."""
    import components.config.load
    from components.config.model import Secret

    parsed: list[Any] = []
    real_parse, real_reveal = components.config.load.parse_config, Secret.reveal

    def parse(*args: Any, **kwargs: Any) -> Any:
        parsed.append(real_parse(*args, **kwargs))
        return parsed[-1]

    def reveal(self: Secret) -> str:
        assert not parsed, "a component revealed a secret"
        return real_reveal(self)

    monkeypatch.setattr(components.config.load, "parse_config", parse)
    monkeypatch.setattr(Secret, "reveal", reveal)
    raw, secrets = full_config()
    run = run_program(raw, secrets, stack="prod")
    assert parsed, "the program parsed its config"
    for r in run.registrations:
        if any(s in json.dumps(r.inputs) for s in SECRETS):
            assert r.secret_inputs, f"{r.name} carries a secret in a plain input"
    assert {"envs"} <= web_containers(run)[0].secret_inputs


def test_secret_env_stays_secret_into_the_container(full_run: ProgramRun) -> None:
    web = web_containers(full_run)[0]
    assert "envs" in web.secret_inputs
    assert "SECRET_KEY=app-secret-for-tests" in web.inputs["envs"]
    assert any(e.startswith("DATABASE_URL=postgresql://app:pg-password-for-tests@postgres:5432/app") for e in web.inputs["envs"])
    assert "stdin" in commands(full_run, "web-migrate").secret_inputs
    for r in full_run.registrations:
        text = json.dumps(r.inputs)
        if any(s in text for s in SECRETS):
            assert r.secret_inputs, f"{r.name} carries a secret in a plain input"
    exported = json.dumps(full_run.outputs)
    assert not any(s in exported for s in SECRETS)


def test_accessories_do_not_change_when_only_the_image_changes() -> None:
    raw, secrets = full_config()
    first = run_program(raw, secrets, stack="prod", env={"CUTOVER_GIT_SHA": "1" * 40})
    second = run_program(raw, secrets, stack="prod", env={"CUTOVER_GIT_SHA": "2" * 40})

    def stateful(run: ProgramRun) -> dict[str, Any]:
        keep = ("postgres", "redis", "accessories-network", "proxy")
        return {r.name: r.inputs for r in run.registrations if r.custom and any(k in r.name for k in keep)}

    assert stateful(first) == stateful(second)
    assert len(stateful(first)) >= 10
    assert web_containers(first)[0].inputs["image"] != web_containers(second)[0].inputs["image"] or (
        web_containers(first)[0].inputs["envs"] != web_containers(second)[0].inputs["envs"]
    )
    for name in ("accessories-postgres", "accessories-redis", "proxy-ports"):
        assert next(r for r in first.registrations if r.name == name).options["deleteBeforeReplace"] is True
    volumes = first.of_type("docker:index/volume:Volume")
    assert volumes and all(v.options["retainOnDelete"] for v in volumes)


def test_accessories_are_private_with_healthchecks(full_run: ProgramRun) -> None:
    assert full_run.one("docker:index/network:Network", "accessories-network").inputs["internal"] is True
    for role in ("postgres", "redis"):
        c = full_run.one(CONTAINER, f"accessories-{role}")
        assert "ports" not in c.inputs
        assert c.inputs["networksAdvanced"] == [{"name": "web-prod-private", "aliases": [role]}]
        assert c.inputs["wait"] is True and c.inputs["healthcheck"]["tests"]
        assert "envs" in c.secret_inputs


def test_migration_runs_the_new_image_once(full_run: ProgramRun) -> None:
    migrate = commands(full_run, "web-migrate")
    image_id = full_run.one("docker:index/remoteImage:RemoteImage", "web-image").outputs["imageId"]
    assert migrate.inputs["create"].endswith(f"{image_id} alembic upgrade head")
    assert migrate.inputs["triggers"] == [image_id]
    assert migrate.inputs["update"] == ":", "an env or connection change runs no migration"
    assert "--env-file /dev/stdin" in migrate.inputs["create"] and "SECRET" not in migrate.inputs["create"]


def test_switch_points_the_slots_at_exactly_the_new_containers(full_run: ProgramRun) -> None:
    switch = commands(full_run, "switch-traffic")
    names = full_run.outputs["containers"]
    assert len(names) == 3
    script = switch.inputs["create"]
    # the names go to the slot files, as arguments of one exec in the proxy
    assert f"for c in {' '.join(names)}; do" in script, "the health gate checks each new container"
    # (the first argument says whether a canary saved the previous slots already)
    assert 'sh "${canaried:-}" ' + " ".join(names) in script and "mv /etc/caddy/live/$n.next /etc/caddy/live/$n" in script
    # the health gate comes first: the proxy is never pointed at a container not healthy now
    gate = script.index("refusing to route to $c")
    assert gate < script.index("cp -a /etc/caddy/live /etc/caddy/live.prev") and "running/healthy" in script
    # the Caddyfile names no container: one placeholder slot per replica
    caddyfile = switch.inputs["stdin"]
    assert not any(n in caddyfile for n in names)
    # the public site reads the live slots, the private verify listener slots of its own
    assert caddyfile.count("{file./etc/caddy/live/2}:8000") == 1 and "live/3" not in caddyfile
    assert caddyfile.count("{file./etc/caddy/verify/2}:8000") == 1 and "verify/3" not in caddyfile
    assert switch.inputs["triggers"] == [caddyfile, names, full_run.one(CONTAINER, "web-prod-proxy").outputs["name"], []], (
        "and the containers of each other role (none here)"
    )
    assert "nothing to switch" in switch.inputs["update"], "a change of anything else switches nothing again"
    # a reload only when the Caddyfile differs from the proxy's, validated first
    body = script[script.index("\n}\n") :]  # after the revert function (which reloads only a config it put back)
    guarded = body.split('if [ "$new_config" != "$current_config" ]; then')
    assert len(guarded) == 3 and "caddy validate" in guarded[1] and "caddy reload" in guarded[2]
    assert "caddy reload" not in guarded[0] + guarded[1]


def test_a_new_release_does_not_change_the_caddyfile(prod: tuple[dict[str, Any], set[str]]) -> None:
    first = run_program(*prod, stack="prod")
    second = run_program(*prod, stack="prod", env={"CUTOVER_GIT_SHA": "f" * 40})
    a, b = commands(first, "switch-traffic"), commands(second, "switch-traffic")
    assert a.inputs["stdin"] == b.inputs["stdin"]
    assert a.inputs["triggers"][1] != b.inputs["triggers"][1], "the switch still runs: the containers are new"


def test_verify_expects_an_answer_from_a_new_container(full_run: ProgramRun) -> None:
    switch = commands(full_run, "switch-traffic")
    script = switch.inputs["create"]
    assert f"http://127.0.0.1:{VERIFY_PORT}/health" in script
    new = switch.inputs["triggers"][1]  # the upstreams it switches to
    assert new and f"{UPSTREAM_HEADER}: ({'|'.join(n.replace('.', chr(92) + '.') for n in new)}):[0-9]+" in script
    assert '"version"' not in script, "no version asked of the body unless verify.expectVersion"
    # the verify listener's slots name the new release, which is checked there before any public slot changes;
    # the check after the switch runs only when the proxy's settings changed (no check came first)
    first_check = script.index("verified through the proxy")
    assert script.index("mv /etc/caddy/verify/$n.next /etc/caddy/verify/$n") < first_check < script.index("proxy now routes to")
    after = script[script.index("proxy now routes to") :]
    assert 'if [ -z "$verified_first" ]; then' in after and "verified through the proxy" in after
    assert after.index("verified through the proxy") < after.index("draining old routes")


def test_no_migration_step_when_not_configured(dev: tuple[dict[str, Any], set[str]]) -> None:
    run = run_program(*dev)
    assert not [r for r in run.registrations if r.name == "web-migrate"]
    assert not [r for r in run.registrations if "accessories-" in r.name]


def test_invalid_config_registers_nothing() -> None:
    with pytest.raises(ProgramFailedError) as err:
        run_program({"appName": "Bad Name", "web": {"replicas": -1}})
    assert err.value.registrations == []
    message = str(err.value)
    assert "cutover:appName" in message and "cutover:web.replicas = -1" in message
    assert "cutover:image.repository is missing" in message


def test_a_renamed_project_reads_its_own_keys_and_names_them(dev: tuple[dict[str, Any], set[str]]) -> None:
    """Pulumi.yaml `name: shop`: `pulumi config set --path web.replicas 2` sets shop:web.replicas, which the
    program reads (and the keys of another namespace are not its own)."""
    raw, secrets = dev
    run = run_program({**raw, "web": {**raw.get("web", {}), "replicas": 2}}, secrets, project="shop")
    assert len(web_containers(run)) == 2
    with pytest.raises(ProgramFailedError) as err:
        run_program({"appName": "Bad Name", "web": {"replicas": -1}}, project="shop")
    message = str(err.value)
    assert 'shop:appName = "Bad Name"' in message and "shop:web.replicas = -1" in message
    assert "shop:image.repository is missing" in message and "cutover:" not in message


# ---------------------------------------------------------------- the rendered proxy config


@pytest.mark.parametrize("replicas", [1, 3])
@pytest.mark.parametrize("domain", [None, "app.example.com"])
def test_caddyfile_for_replicas_and_domain(replicas: int, domain: str | None) -> None:
    text = render_caddyfile(Route(slots=replicas, port=8000, domain=domain, email="ops@example.com" if domain else None))
    slots = " ".join(f"{{file./etc/caddy/live/{i}}}:8000" for i in range(replicas))
    checked = " ".join(f"{{file./etc/caddy/verify/{i}}}:8000" for i in range(replicas))
    # the public site over the live slots, the private verify listener over its own
    assert text.count(f"reverse_proxy {slots} {{") == 1 and text.count(f"reverse_proxy {checked} {{") == 1
    assert text.index(f"reverse_proxy {slots} {{") < text.index(f"http://:{VERIFY_PORT} {{") < text.index(f"reverse_proxy {checked} {{")
    assert "lb_try_duration" in text and "grace_period 30s" in text
    # a slot whose dial failed is set aside for a second only (Caddy remembers it for the slot, whatever
    # container it names next), and each dial is bounded
    assert "fail_duration 1s" in text and "max_fails 1" in text and "dial_timeout 500ms" in text
    assert f"http://:{VERIFY_PORT} {{" in text and "bind 127.0.0.1" in text
    if domain:
        assert "app.example.com {" in text and "auto_https off" not in text and "email ops@example.com" in text
    else:
        assert ":80 {" in text and "auto_https off" in text


def test_caddyfile_with_a_private_acme_directory() -> None:
    text = render_caddyfile(Route(slots=1, port=8000, domain="app.example.com", acme_ca="https://acme.internal/dir", acme_ca_root=True))
    head = text[: text.index("app.example.com {")]
    assert "\tacme_ca https://acme.internal/dir\n" in head and "\tacme_ca_root /etc/caddy/acme-ca-root.pem\n" in head
    assert "acme_ca" not in render_caddyfile(Route(slots=1, port=8000, domain="app.example.com"))


def test_the_switch_writes_the_acme_ca_root_before_it_validates_the_caddyfile() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    script = go_live_script("proxy", ["web-a-0"], drain_s=2, wait_healthy_s=5, verification=None, acme_ca_root=pem)
    write = script.index("cat > /etc/caddy/acme-ca-root.pem.next && mv /etc/caddy/acme-ca-root.pem.next /etc/caddy/acme-ca-root.pem")
    assert write < script.index("caddy validate") and shlex.quote(pem) in script
    assert "acme-ca-root" not in go_live_script("proxy", ["web-a-0"], drain_s=2, wait_healthy_s=5, verification=None)


def test_caddyfile_and_switch_refuse_no_upstreams_or_odd_names() -> None:
    with pytest.raises(ValueError, match="at least one upstream slot"):
        render_caddyfile(Route(slots=0, port=8000))
    with pytest.raises(ValueError, match="at least one web container"):
        switch_steps("proxy", [])
    with pytest.raises(ValueError, match="not a container name"):
        go_live_script("proxy", ["web }"], drain_s=2, wait_healthy_s=5, verification=None)


def _verify_against(answer: str, version: str | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The verify steps run by sh against a proxy whose `docker exec ... wget -S` prints `answer` (headers on
    stderr as wget -S gives them, then the body)."""
    fake = tmp_path / "docker"
    fake.write_text(f"#!/bin/sh\nprintf '%s' {shlex.quote(answer)}\n")
    fake.chmod(0o755)
    steps = verify_steps("proxy", Verification(VERIFY_PORT, "/health", version, 2, 0), ["web-prod-new.0", "web-prod-new-1"])
    script = "\n".join(["set -eu", "revert() { echo reverted; }", *steps])
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env, timeout=30, check=False)


def test_verify_passes_only_when_a_new_container_answers(tmp_path: Path) -> None:
    def answer(upstream: str, body: str = "ok") -> str:
        return f"  HTTP/1.1 200 OK\n  Content-Length: {len(body)}\n  {UPSTREAM_HEADER}: {upstream}\r\n{body}"

    assert _verify_against(answer("web-prod-new-1:8000"), None, tmp_path).returncode == 0
    assert _verify_against(answer("web-prod-new.0:8000"), None, tmp_path).returncode == 0
    # the old release still answering, a name that only looks like a new one, no header at all: refused
    for wrong in (answer("web-prod-old-0:8000"), answer("web-prod-newx0:8000"), "  HTTP/1.1 200 OK\nok"):
        refused = _verify_against(wrong, None, tmp_path)
        assert refused.returncode == 1 and "reverted" in refused.stdout, wrong
        assert "did not answer 200 from a new container after 2 attempts" in refused.stderr, refused.stderr
    # verify.expectVersion: the body must carry the version too
    assert _verify_against(answer("web-prod-new-1:8000", '{"version": "v2"}'), "v2", tmp_path).returncode == 0
    assert _verify_against(answer("web-prod-new-1:8000", '{"version": "v1"}'), "v2", tmp_path).returncode == 1


def test_without_verification_the_switch_only_drains() -> None:
    script = go_live_script("proxy", ["web-a-0"], drain_s=2, wait_healthy_s=5, verification=None)
    assert "wget" not in script and script.endswith(f"sleep 2\n{live_restore_note()}")


def test_parse_config_is_pure() -> None:
    raw = {"appName": "web", "image": {"repository": "ghcr.io/acme/web"}}
    assert parse_config(raw, set(), "dev", "a" * 40) == parse_config(raw, set(), "dev", "a" * 40)


def test_the_host_pulls_with_the_registry_login(prod: tuple[dict[str, Any], set[str]]) -> None:
    run = run_program(*prod, stack="prod")
    provider = run.one("pulumi:providers:docker")
    auth = json.loads(provider.inputs["registryAuth"])
    assert auth == [{"address": "ghcr.io", "username": "acme-deploy", "password": "ghcr-token-for-tests"}]
    assert "registryAuth" in provider.secret_inputs


def test_a_failed_verification_puts_the_previous_upstreams_back(full_run: ProgramRun) -> None:
    switch = verify = commands(full_run, "switch-traffic").inputs["create"]
    assert "cp -a /etc/caddy/live /etc/caddy/live.prev" in switch
    assert "cp /etc/caddy/Caddyfile /etc/caddy/Caddyfile.prev" in switch
    revert = verify[verify.index("revert() {") : verify.index("\n}\n")]
    assert revert.index('mv "$f" "/etc/caddy/live/${f##*/}"') < revert.index("mv /etc/caddy/Caddyfile.prev /etc/caddy/Caddyfile")
    assert 'if [ -n "$switched" ]' in revert, "only what this run switched is put back"
    failed = verify[verify.index("verification failed") :]
    assert failed.index("revert") < failed.index("exit 1")


def test_the_live_release_is_on_probation_before_the_old_one_goes(full_run: ProgramRun) -> None:
    script = commands(full_run, "switch-traffic").inputs["create"]
    names = full_run.outputs["containers"]
    probation = script.index("probation: watching")
    assert script.index("verified through the proxy") < probation < script.index("draining old routes")
    assert 'while [ "$(date +%s)" -le $((went_live + 30)) ]' in script, "at least 30 s: went_live is whole seconds"
    assert all(f"--filter container={n}" in script for n in names), "Docker's events of exactly the new containers"
    assert "--filter event=die" in script and "--filter event=health_status" in script
    assert "-gt $((total * 10))" in script, "more than 10% 5xx fails it"
    proxy = full_run.one(CONTAINER, "web-prod-proxy").outputs["name"]
    assert f'docker logs --since "$since" --tail 2000 {proxy} ' in script, "a judgement reads the log's end, not all of it"
    failed = script[script.index('if [ -n "$verdict" ]; then') :]
    assert failed.index("revert") < failed.index("docker logs --tail 15") < failed.index("exit 1")
    assert "the proxy routes to the previous release again" in script[: script.index("\n}\n")]
    release = full_run.outputs["release"]
    assert release["probation"] == "30s"


def test_a_canary_slot_goes_live_and_is_watched_before_the_full_switch(prod: tuple[dict[str, Any], set[str]]) -> None:
    raw, secrets = prod
    run = run_program({**raw, "releases": {"canary": "12s"}}, secrets, stack="prod")
    script = commands(run, "switch-traffic").inputs["create"]
    first, *_ = names = run.outputs["containers"]
    canary = script.index(f"canary: the proxy routes 1 of {len(names)} slots to {first}")
    full = script.index("proxy now routes to " + " ".join(names))
    assert script.index("refusing to route to") < canary < script.index("canary: watching") < full, "gated, canary, then all"
    assert script.index("canary: watching") < script.index('while [ "$(date +%s)" -le $((went_live + 12)) ]') < full
    assert script.index("canaried=yes") < full < script.index("probation: watching")
    assert f'/"upstream":"{first}:/' in script, "the canary's error rate counts its own answers"
    # the whole release was verified through the verify listener before the canary slot named it
    assert script.index("verified through the proxy") < canary and "verified_first=yes" in script[:canary]
    assert 'if [ "$new_config" = "$(docker exec' in script, "only when the proxy's settings stay as they are"
    assert "canary" not in commands(run_program(raw, secrets, stack="prod"), "switch-traffic").inputs["create"].replace("canaried", "")


def test_with_one_web_replica_there_is_no_canary_and_the_step_says_why(prod: tuple[dict[str, Any], set[str]]) -> None:
    raw, secrets = prod
    run = run_program({**raw, "web": {**raw["web"], "replicas": 1}, "releases": {"canary": "12s"}}, secrets, stack="prod")
    script = commands(run, "switch-traffic").inputs["create"]
    assert "canary: none, with one web container one slot is all the traffic" in script
    assert "canary: watching" not in script


def test_probation_can_be_turned_off(prod: tuple[dict[str, Any], set[str]]) -> None:
    raw, secrets = prod
    run = run_program({**raw, "releases": {"probation": "0s"}}, secrets, stack="prod")
    script = commands(run, "switch-traffic").inputs["create"]
    assert "probation" not in script and run.outputs["release"]["probation"] == "0s"


def test_the_public_site_probes_each_slot_and_the_verify_listener_does_not() -> None:
    text = render_caddyfile(Route(slots=2, port=8000, health_path="/ready", upstream_timeout_ms=750))
    public, private = text.split(f"http://:{VERIFY_PORT} {{")
    probe = ["health_uri /ready", "health_interval 500ms", "health_timeout 750ms", "health_fails 2", "health_passes 1"]
    assert all(f"\t\t{line}\n" in public for line in probe), public
    assert "health_" not in private, "the verification reaches a new container whatever the probe thinks of its slot"
    assert "health_port" not in public and "health_port 9000\n" in render_caddyfile(Route(slots=1, port=8000, health_port=9000))


def test_the_probe_asks_for_the_configured_health_path_within_the_configured_timeout(prod: tuple[dict[str, Any], set[str]]) -> None:
    raw, secrets = prod
    run = run_program(
        {**raw, "healthcheck": {"path": "/up"}, "proxy": {**raw.get("proxy", {}), "upstreamTimeout": "1500ms"}}, secrets, stack="prod"
    )
    caddyfile = commands(run, "switch-traffic").inputs["stdin"]
    assert "health_uri /up\n" in caddyfile and "health_timeout 1500ms\n" in caddyfile, caddyfile


def test_the_access_log_probation_counts_is_written_by_the_public_site_only() -> None:
    text = render_caddyfile(Route(slots=2, port=8000))
    public, private = text.split(f"http://:{VERIFY_PORT} {{")
    assert "log {\n\t\toutput stdout\n\t\tformat json\n\t}" in public
    assert "log {" not in private, "the verification's own requests are not counted"


def test_each_run_exports_its_own_outputs_only(prod: tuple[dict[str, Any], set[str]]) -> None:
    """Runs in one process share Pulumi's runtime: the harness gives each its own root stack resource."""
    raw, secrets = prod
    assert "url" in run_program(raw, secrets, stack="prod").outputs
    bot = {"command": ["python", "-m", "bot"], "overlap": False, "healthcheck": {"command": ["true"]}}
    assert "url" not in run_program({**raw, "web": {"enabled": False}, "roles": {"bot": bot}}, secrets, stack="prod").outputs


# --- no secret in a plain input, output or export --------------------------------------------------

GITHUB_TOKEN = "github-token-for-tests-0123456789"
WEBHOOK = "https://hooks.example.com/services/webhook-for-tests"


def everything_secret() -> tuple[dict[str, Any], set[str], dict[str, str]]:
    """Every secret config key the program reads, set: the full stack plus the GitHub side's and the webhook."""
    raw, secret_keys = full_config()
    raw = {
        **raw,
        "notifyWebhook": WEBHOOK,
        "githubSecrets": json.dumps(
            {
                "PULUMI_CONFIG_PASSPHRASE": "passphrase-for-tests",
                "PULUMI_BACKEND_URL": "s3://state-for-tests?region=eu-west-1",
                "SENTRY_DSN": "sentry-dsn-for-tests",
            }
        ),
    }
    return raw, secret_keys | {"notifyWebhook"}, {"github:token": GITHUB_TOKEN}


def secret_values(raw: dict[str, Any], secret_keys: set[str], other: dict[str, str]) -> dict[str, str]:
    """Key -> the actual value of every secret config key (each entry of one holding an object)."""
    values = dict(other)
    for key in secret_keys:
        value = raw[key]
        parsed = json.loads(value) if isinstance(value, str) and value.startswith("{") else value
        if isinstance(parsed, dict):
            values.update({f"{key}.{k}": str(v) for k, v in parsed.items()})
        else:
            values[key] = str(value)
    return values


def spellings(value: str) -> set[str]:
    """The forms a value takes inside other text: as is, in a JSON string, URL-encoded, shell-quoted, base64."""
    import base64
    import urllib.parse

    return {
        value,
        json.dumps(value)[1:-1],
        urllib.parse.quote(value, safe=""),
        shlex.quote(value),
        base64.b64encode(value.encode()).decode(),
    }


def _leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    return [(path, value)]


def _under(path: str, secret_paths: set[str]) -> bool:
    return any(path == s or path.startswith((f"{s}.", f"{s}[")) for s in secret_paths)


def plain_secrets(run: ProgramRun, values: dict[str, str]) -> list[str]:
    """Where a secret value sits outside a secret: '<resource> <input|output> <path>: <config key>' (never the value)."""
    forms = {key: spellings(value) for key, value in values.items()}

    def holders(text: str) -> list[str]:
        return [key for key, spelled in forms.items() if any(f in text for f in spelled)]

    found = []
    for reg in run.registrations:
        for kind, tree, secret_paths in (("input", reg.inputs, reg.secret_inputs), ("output", reg.outputs, reg.secret_outputs)):
            for path, leaf in _leaves(tree):
                if isinstance(leaf, str) and not _under(path, secret_paths):
                    found += [f"{reg.type} {reg.name} {kind} {path}: {key}" for key in holders(leaf)]
    for name, value in run.outputs.items():
        if name not in run.secret_outputs:
            found += [f"export {name}: {key}" for key in holders(json.dumps(value, default=str))]
    return found


def test_no_secret_value_sits_in_a_plain_input_output_or_export() -> None:
    raw, secret_keys, other = everything_secret()
    values = secret_values(raw, secret_keys, other)
    # the program generates no password of its own (no random provider): each secret is a config value
    run = run_program(raw, secret_keys, stack="prod", env={"GITHUB_TOKEN": ""}, config_extra=other)
    generated = [r for r in run.registrations if r.type.startswith("random:")]
    values |= {f"{r.name}.result": str(r.outputs["result"]) for r in generated}
    assert sorted(values) == [
        "github:token",
        "githubSecrets.PULUMI_BACKEND_URL",
        "githubSecrets.PULUMI_CONFIG_PASSPHRASE",
        "githubSecrets.SENTRY_DSN",
        "notifyWebhook",
        "postgresPassword",
        "redisPassword",
        "registryPassword",
        "secretEnv.SECRET_KEY",
        "sshPrivateKey",
    ]
    assert [key for key, value in values.items() if len(value) < 12] == [], "values long enough to be found only where they are"
    assert plain_secrets(run, values) == []
    # and each value does reach the resources, as secrets: the check above looked where they are
    texts = [json.dumps([reg.inputs, reg.outputs], default=str) for reg in run.registrations]
    reached = {key for key, value in values.items() if any(f in text for f in spellings(value) for text in texts)}
    assert sorted(set(values) - reached) == []


def test_the_secret_check_finds_a_value_in_a_plain_input() -> None:
    raw, secret_keys, other = everything_secret()
    run = run_program(raw, secret_keys, stack="prod", config_extra=other)
    migrate = commands(run, "web-migrate")
    migrate.inputs["create"] += " --password pg-password-for-tests"
    migrate.outputs["create"] += " --password pg-password-for-tests"
    assert plain_secrets(run, {"postgresPassword": "pg-password-for-tests"}) == [
        "command:remote:Command web-migrate input create: postgresPassword",
        "command:remote:Command web-migrate output create: postgresPassword",
    ]


@pytest.mark.parametrize(("engine_says", "noted"), [("false", True), ("true", False), ("", False)])
def test_the_go_live_step_notes_an_engine_without_live_restore(engine_says: str, noted: bool, tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text(f'#!/bin/sh\n[ "$1" = info ] && echo {engine_says}\n')
    fake.chmod(0o755)
    script = go_live_script(None, [], drain_s=0, wait_healthy_s=5, verification=None)
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, timeout=30)
    assert out.returncode == 0, out.stderr
    assert ("live-restore is off" in out.stderr) is noted, out.stderr
    assert ('{"live-restore": true}' in out.stderr) is noted
