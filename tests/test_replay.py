"""The replay engine plays the real engine and providers: each rule it follows, pinned without Docker.

tests/e2e/replay is how the e2e tests know what `pulumi up` does; these tests keep each of its
rules as the source it cites says (plan.py, readback.py, engine.py), including the ones that
used to be wrong in it: provider-forced delete-before-replace, diffs against what Read stored,
init errors adopted by an empty Update, refresh before the program with the recorded provider,
and the stack outputs kept after a late failure.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config.load import parse_config
from components.release.containers import web_container
from tests.e2e.replay import engine as replay_engine
from tests.e2e.replay import plan, providers
from tests.e2e.replay.engine import Engine, UpdateFailedError, default_parallelism, force_new
from tests.e2e.replay.readback import container_state
from tests.harness import ProgramRun, Registration

CONTAINER_FORCE_NEW = force_new(plan.CONTAINER)
MB = 1024 * 1024


def web_inputs(**web: Any) -> dict[str, Any]:
    """The program's own web container spec, as the engine receives it (camelCase)."""
    cfg = parse_config({"appName": "web", "image": {"repository": "ghcr.io/acme/web", "push": False}, "web": web}, set(), "dev", "a" * 40)
    spec = web_container(cfg.web, cfg.healthcheck, "sha256:" + "1" * 64, ["web-dev-edge"])
    camel = {"".join(w.capitalize() if i else w for i, w in enumerate(k.split("_"))): v for k, v in spec.items()}
    camel["healthcheck"] = {
        "tests": spec["healthcheck"]["tests"],
        **{
            k: spec["healthcheck"][s]
            for k, s in (("interval", "interval"), ("timeout", "timeout"), ("retries", "retries"), ("startPeriod", "start_period"))
        },
    }
    camel["logOpts"], camel["tmpfs"] = dict(spec["log_opts"]), dict(spec["tmpfs"])
    return camel


def docker_inspect(inputs: dict[str, Any], **host: Any) -> dict[str, Any]:
    """What Docker 20.10 reports for a container created from `inputs` (a kernel without swap accounting:
    MemorySwap -1), with `host` overriding HostConfig fields."""
    from tests.e2e.replay.providers import container_create_body, go_duration_ns

    body = container_create_body("web-x-0", inputs)
    hc = inputs["healthcheck"]
    config = {
        "Image": "ghcr.io/acme/web@sha256:" + "2" * 64,
        "User": inputs["user"],
        "StopSignal": inputs["stopSignal"],
        "StopTimeout": inputs["stopTimeout"],
        "Cmd": ["uvicorn", "main:app"],
        "Healthcheck": {
            "Test": hc["tests"],
            "Interval": go_duration_ns(hc["interval"]),
            "Timeout": go_duration_ns(hc["timeout"]),
            "StartPeriod": go_duration_ns(hc["startPeriod"]),
            "Retries": hc["retries"],
        },
    }
    return {
        "Id": "c" * 64,
        "Name": "/web-x-0-abcdef1",
        "Image": inputs["image"],
        "Config": config,
        "HostConfig": {**body["HostConfig"], "MemorySwap": -1, **host},
        "State": {"Running": True, "Health": {"Status": "healthy"}},
        "NetworkSettings": {"Ports": {}},
    }


def stored(inputs: dict[str, Any], **host: Any) -> plan.Old:
    """The state after Create: Read applied to Docker's answer (KW funcs.go:673)."""
    return plan.Old(plan.CONTAINER, inputs, container_state(docker_inspect(inputs, **host), {**inputs, "name": "web-x-0-abcdef1"}))


WEB_OPTIONS = {"deleteBeforeReplace": False, "deleteBeforeReplaceDefined": True, "replaceOnChanges": ["*"], "ignoreChanges": ["memorySwap"]}


# ---------------------------------------------------------------- delete-before-replace


def test_the_docker_provider_replaces_containers_delete_first_unless_the_program_says_otherwise() -> None:
    inputs = web_inputs()
    old = stored(inputs)
    changed = {**inputs, "image": "sha256:" + "9" * 64}
    provider_default = plan.decide(
        plan.CONTAINER, old, changed, {"deleteBeforeReplace": False, "deleteBeforeReplaceDefined": False}, CONTAINER_FORCE_NEW
    )
    assert provider_default.action == "replace" and provider_default.delete_before_replace is True
    program_says_no = plan.decide(plan.CONTAINER, old, changed, WEB_OPTIONS, CONTAINER_FORCE_NEW)
    assert program_says_no.action == "replace" and program_says_no.delete_before_replace is False
    program_says_yes = plan.decide(plan.CONTAINER, old, changed, {"deleteBeforeReplace": True}, CONTAINER_FORCE_NEW)
    assert program_says_yes.delete_before_replace is True


def test_commands_and_others_are_replaced_create_first() -> None:
    old = plan.Old(plan.REMOTE_COMMAND, {"create": "a", "triggers": ["x"]}, {})
    decision = plan.decide(plan.REMOTE_COMMAND, old, {"create": "a", "triggers": ["y"]}, {}, frozenset())
    assert decision.action == "replace" and decision.delete_before_replace is False


# ---------------------------------------------------------------- diffs against what Read stored


def test_cpus_sent_as_1_replace_the_container_on_every_update() -> None:
    inputs = {**web_inputs(), "cpus": "1"}  # what the program sent before
    old = stored(inputs)
    assert old.outputs["cpus"] == "1.0", "Read stores nanoInt64ToDecimalString(NanoCpus)"
    again = plan.decide(plan.CONTAINER, old, inputs, {}, CONTAINER_FORCE_NEW)
    assert again.action == "replace" and again.replace_keys == ("cpus",) and again.delete_before_replace


def test_the_programs_web_container_reads_back_unchanged() -> None:
    inputs = web_inputs()
    assert inputs["cpus"] == "1.0"
    assert plan.decide(plan.CONTAINER, stored(inputs), inputs, WEB_OPTIONS, CONTAINER_FORCE_NEW).action == "same"


def test_memory_swap_rewritten_by_docker_is_a_change_unless_ignored() -> None:
    inputs = web_inputs()
    old = stored(inputs)  # Docker set -1: this kernel does not account swap
    assert old.outputs["memorySwap"] == -1
    assert plan.decide(plan.CONTAINER, old, inputs, {}, CONTAINER_FORCE_NEW).action == "update"
    with_star = {**WEB_OPTIONS, "ignoreChanges": []}
    assert plan.decide(plan.CONTAINER, old, inputs, with_star, CONTAINER_FORCE_NEW).action == "replace", "'*' turns it into a replacement"
    assert plan.decide(plan.CONTAINER, old, inputs, WEB_OPTIONS, CONTAINER_FORCE_NEW).action == "same"
    unset = {k: v for k, v in inputs.items() if k != "memorySwap"}
    swapping = stored(unset, MemorySwap=1024 * MB)  # a kernel that accounts swap: Docker doubles the memory
    assert plan.decide(plan.CONTAINER, swapping, unset, {}, CONTAINER_FORCE_NEW).changed == ("memorySwap",)


def test_a_duration_of_a_minute_reads_back_in_gos_form() -> None:
    inputs = web_inputs()
    inputs["healthcheck"] = {**inputs["healthcheck"], "interval": "1m"}
    old = stored(inputs)
    assert old.outputs["healthcheck"]["interval"] == "1m0s"
    decision = plan.decide(plan.CONTAINER, old, inputs, {"ignoreChanges": ["memorySwap"]}, CONTAINER_FORCE_NEW)
    assert decision.action == "update" and decision.changed == ("healthcheck",), "not ForceNew: an update the provider does not apply"


def test_a_stopped_container_reads_back_no_ports_and_must_run_false() -> None:
    proxy = {**web_inputs(), "ports": [{"internal": 80, "external": 8080}]}
    info = docker_inspect(proxy)
    info["State"] = {"Running": False}
    state = container_state(info, proxy)
    assert state["mustRun"] is False and state["ports"] == []
    assert plan.decide(plan.CONTAINER, plan.Old(plan.CONTAINER, proxy, state), proxy, {}, CONTAINER_FORCE_NEW).action == "replace"


def test_ports_read_back_with_the_providers_defaults() -> None:
    proxy = {**web_inputs(), "ports": [{"internal": 80, "external": 8080}]}
    info = docker_inspect(proxy)
    info["NetworkSettings"]["Ports"] = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    state = container_state(info, proxy)
    assert state["ports"] == [{"internal": 80, "external": 8080, "ip": "0.0.0.0", "protocol": "tcp"}]
    assert (
        plan.decide(
            plan.CONTAINER, plan.Old(plan.CONTAINER, proxy, state), proxy, {"ignoreChanges": ["memorySwap"]}, CONTAINER_FORCE_NEW
        ).action
        == "same"
    )
    body = providers.container_create_body("proxy", proxy)
    assert body["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}, "IPv4 only, as the provider binds"


def test_env_and_labels_are_not_read_back() -> None:
    inputs = {**web_inputs(), "envs": ["A=1"], "labels": [{"label": "x", "value": "1"}]}
    state = container_state(docker_inspect(inputs), inputs)
    assert state["envs"] == ["A=1"] and state["labels"] == [{"label": "x", "value": "1"}]
    changed = {**inputs, "envs": ["A=2"]}
    decision = plan.decide(plan.CONTAINER, plan.Old(plan.CONTAINER, inputs, state), changed, WEB_OPTIONS, CONTAINER_FORCE_NEW)
    assert decision.action == "replace" and decision.replace_keys == ("envs",) and not decision.delete_before_replace


def test_an_in_place_change_becomes_a_replacement_with_star() -> None:
    inputs = web_inputs()
    changed = {**inputs, "tmpfs": {"/tmp": "rw,size=128m"}}
    old = stored(inputs)
    assert plan.decide(plan.CONTAINER, old, changed, {}, CONTAINER_FORCE_NEW).action == "update"
    assert plan.decide(plan.CONTAINER, old, changed, WEB_OPTIONS, CONTAINER_FORCE_NEW).action == "replace"


# ---------------------------------------------------------------- init errors


def test_a_container_left_unhealthy_is_adopted_without_replace_on_changes() -> None:
    inputs = web_inputs()
    # a failed create never reached its Read: the state is the planned one, the config (KW funcs.go:460, 673)
    old = plan.Old(
        plan.CONTAINER,
        inputs,
        plan.container_config({**inputs, "name": "web-x-0-abcdef1"}),
        ("creating urn: container failed to be in healthy state",),
    )
    assert plan.decide(plan.CONTAINER, old, inputs, {}, CONTAINER_FORCE_NEW).action == "adopt"
    assert plan.decide(plan.CONTAINER, old, inputs, {"replaceOnChanges": ["cpus"]}, CONTAINER_FORCE_NEW).action == "adopt"
    star = plan.decide(plan.CONTAINER, old, inputs, WEB_OPTIONS, CONTAINER_FORCE_NEW)
    assert star.action == "replace" and star.replace_keys == ("#initerror",) and not star.delete_before_replace
    assert plan.decide(plan.CONTAINER, old, inputs, {"replaceOnChanges": ["#initerror"]}, CONTAINER_FORCE_NEW).action == "replace"


# ---------------------------------------------------------------- the other providers


def test_an_image_is_updated_never_replaced_and_a_new_login_is_no_change() -> None:
    old = plan.Old(
        plan.IMAGE, {"imageName": "r:1", "build": {"contextDigest": "a"}, "registry": {"server": "ghcr.io", "password": "p"}}, {}
    )
    rebuilt = plan.decide(plan.IMAGE, old, {**old.inputs, "build": {"contextDigest": "b"}}, {}, frozenset())
    assert rebuilt.action == "update", "pulumi-docker's Update builds and pushes again under the same name"
    relogin = {**old.inputs, "registry": {"server": "ghcr.io", "password": "q"}}
    assert plan.decide(plan.IMAGE, old, relogin, {}, frozenset()).action == "same"


def test_a_command_runs_again_on_any_change_and_is_replaced_on_its_triggers() -> None:
    old = plan.Old(plan.LOCAL_COMMAND, {"create": "a", "triggers": ["x"], "stdin": "s"}, {})
    assert plan.decide(plan.LOCAL_COMMAND, old, {**old.inputs, "stdin": "t"}, {}, frozenset()).action == "update"
    assert plan.decide(plan.LOCAL_COMMAND, old, {**old.inputs, "triggers": ["y"]}, {}, frozenset()).action == "replace"


def test_a_provider_configuration_change_is_an_update() -> None:
    old = plan.Old(plan.DOCKER_PROVIDER, {"host": "ssh://a@b"}, {})
    assert plan.decide(plan.DOCKER_PROVIDER, old, {"host": "ssh://a@c"}, {}, frozenset()).action == "update"


def test_default_parallelism_is_four_per_cpu_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_parallelism({}) == 8
    assert default_parallelism({"PULUMI_PARALLEL": "3"}) == 3
    assert default_parallelism({"PULUMI_PARALLEL": "0"}) == 8


# ---------------------------------------------------------------- the engine's order, with providers that only record


class FakeDocker:
    """Stands in for the providers' Docker operations, to pin the engine's own orchestration."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_create: set[str] = set()
        self.fail_delete: set[str] = set()
        self.unhealthy: set[str] = set()
        self.gone: set[str] = set()
        self.configured: list[dict[str, Any]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake = self

        def configure(inputs: Any, env: Any) -> Any:
            fake.configured.append({"inputs": dict(inputs), "SSH_AUTH_SOCK": env.get("SSH_AUTH_SOCK")})
            return object()

        def create(provider: Any, name: str, inputs: Any) -> Any:
            fake.calls.append(("create", name))
            if name in fake.unhealthy:
                raise providers.ProviderError(providers.HEALTH_TIMEOUT_MESSAGE, partial={"id": f"id-{name}", "state": dict(inputs)})
            if name in fake.fail_create:
                raise providers.ProviderError("Unable to create container: boom")
            return f"id-{name}-{len(fake.calls)}", {**inputs, "name": f"{name}-real"}

        def delete(provider: Any, cid: str, state: Any) -> None:
            fake.calls.append(("delete", cid))
            if any(cid.startswith(f"id-{n}") for n in fake.fail_delete):
                raise providers.ProviderError("Error deleting container")

        def read(provider: Any, cid: str, state: Any) -> Any:
            fake.calls.append(("read", cid))
            return None if any(cid.startswith(f"id-{n}") for n in fake.gone) else dict(state)

        monkeypatch.setattr(providers, "configure_docker", configure)
        monkeypatch.setattr(providers, "container_create", create)
        monkeypatch.setattr(providers, "container_delete", delete)
        monkeypatch.setattr(providers, "container_read", read)


def reg(name: str, inputs: dict[str, Any], deps: tuple[str, ...] = (), **options: Any) -> Registration:
    return Registration(
        type=plan.CONTAINER if name != "docker" else plan.DOCKER_PROVIDER,
        name=name,
        urn=f"urn:pulumi:s::cutover::{'docker:index/container:Container' if name != 'docker' else 'pulumi:providers:docker'}::{name}",
        parent="",
        custom=True,
        inputs=inputs,
        secret_inputs=set(),
        dependencies=list(deps),
        property_dependencies={},
        provider="" if name == "docker" else "urn:pulumi:s::cutover::pulumi:providers:docker::docker::id",
        options={**WEB_OPTIONS, **options},
        outputs={"name": f"{name}-mock123"},
    )


def program(*containers: str, outputs_wait_for: tuple[str, ...] = (), **inputs: Any) -> ProgramRun:
    provider = reg("docker", {"host": "ssh://deploy@h", "sshOpts": "[]"})
    regs = [provider] + [reg(c, {"image": "sha256:1", **inputs}, deps=()) for c in containers]
    urns = {r.name: r.urn for r in regs}
    return ProgramRun(regs, {"release": {"v": inputs.get("image", "1")}}, set(), {"release": {urns[n] for n in outputs_wait_for}})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    f = FakeDocker()
    f.install(monkeypatch)
    return f


def new_engine() -> Engine:
    return Engine(env={"SSH_AUTH_SOCK": "/run/agent.sock", "PATH": "/usr/bin:/bin"}, parallel=4)


def test_deletes_run_only_after_every_step_succeeded(fake: FakeDocker) -> None:
    engine = new_engine()
    engine.up(program("web-a"))
    fake.calls.clear()
    result = engine.up(program("web-b"))
    assert fake.calls[0] == ("create", "web-b") and fake.calls[-1][0] == "delete", "the old one goes last"
    assert [o.action for o in result.ops if o.name == "web-a"] == ["delete"]


def test_a_failed_update_deletes_nothing_and_keeps_the_old_outputs(fake: FakeDocker) -> None:
    engine = new_engine()
    engine.up(program("web-a", outputs_wait_for=("web-a",)))
    before = copy.deepcopy(engine.outputs)
    fake.calls.clear()
    fake.fail_create.add("web-b")
    with pytest.raises(UpdateFailedError) as err:
        engine.up(program("web-b", outputs_wait_for=("web-b",), image="sha256:2"))
    assert not [c for c in fake.calls if c[0] == "delete"]
    assert engine.outputs == before and not err.value.result.outputs_registered
    assert "urn:pulumi:s::cutover::docker:index/container:Container::web-a" in engine.state


def test_outputs_registered_before_a_late_failure_are_kept(fake: FakeDocker) -> None:
    engine = new_engine()
    engine.up(program("web-a", outputs_wait_for=("web-a",)))
    fake.fail_delete.add("web-a")
    with pytest.raises(UpdateFailedError) as err:
        engine.up(program("web-b", outputs_wait_for=("web-b",), image="sha256:2"))
    assert err.value.result.outputs_registered and engine.outputs == {"release": {"v": "sha256:2"}}
    assert [a.name for a in engine.pending_deletes] == ["web-a"], "the old one is deleted by the next update"


def test_an_unhealthy_replacement_is_kept_with_its_init_error_and_marks_the_old_one(fake: FakeDocker) -> None:
    engine = new_engine()
    engine.up(program("web-a"))
    fake.unhealthy.add("web-a")
    with pytest.raises(UpdateFailedError) as err:
        engine.up(program("web-a", image="sha256:2"))  # same URN, new inputs: a create-first replacement
    message = str(err.value)
    assert "creating urn:pulumi:s::cutover::docker:index/container:Container::web-a: 1 error occurred:" in message
    assert "* container failed to be in healthy state" in message
    state = engine.state["urn:pulumi:s::cutover::docker:index/container:Container::web-a"]
    assert state.id == "id-web-a" and state.init_errors
    assert [a.id for a in engine.pending_deletes] == ["id-web-a-1"], "the serving one is marked, not deleted"


def test_refresh_before_the_program_uses_the_provider_the_state_recorded(fake: FakeDocker) -> None:
    engine = new_engine()
    engine.up(program("web-a"))
    engine.state["urn:pulumi:s::cutover::docker:index/container:Container::web-a"].init_errors = ("unhealthy",)
    engine.use_machine({"PATH": "/usr/bin:/bin"})  # a fresh runner: another process, no agent yet
    fake.configured.clear()
    fake.calls.clear()
    engine.up(program("web-a"), refresh=True)
    assert fake.calls[0][0] == "read", "read before the program's steps"
    assert fake.configured[0] == {"inputs": {"host": "ssh://deploy@h", "sshOpts": "[]"}, "SSH_AUTH_SOCK": None}
    assert not engine.state["urn:pulumi:s::cutover::docker:index/container:Container::web-a"].init_errors


def test_refresh_drops_a_container_removed_by_hand(fake: FakeDocker) -> None:
    engine = new_engine()
    engine.up(program("web-a"))
    fake.gone.add("web-a")
    fake.calls.clear()
    result = engine.up(program("web-a"), refresh=True, run_program=True)
    assert [c[0] for c in fake.calls] == ["read", "create"]
    assert ("web-a", "create") in result.actions()


def test_the_replay_refuses_inputs_it_does_not_translate() -> None:
    with pytest.raises(providers.ProviderError, match="not translated"):
        providers.container_create_body("web", {**web_inputs(), "privileged": True})
    assert replay_engine.force_new(plan.CONTAINER) >= {"image", "cpus", "envs"}


def test_a_container_in_anothers_network_namespace() -> None:
    """network_mode is sent as given, "bridge" when unset (KW resource_docker_container.go:901-907,
    funcs.go:392-399), read back from HostConfig.NetworkMode (funcs.go:954), and ForceNew."""
    caddy = {**web_inputs(), "networkMode": "container:" + "e" * 64}
    body = providers.container_create_body("proxy", caddy)
    assert body["HostConfig"]["NetworkMode"] == "container:" + "e" * 64
    assert providers.container_create_body("web", web_inputs())["HostConfig"]["NetworkMode"] == "bridge"
    state = container_state(docker_inspect(caddy), caddy)
    assert state["networkMode"] == "container:" + "e" * 64
    old = plan.Old(plan.CONTAINER, caddy, state)
    assert plan.decide(plan.CONTAINER, old, caddy, WEB_OPTIONS, CONTAINER_FORCE_NEW).action == "same"
    moved = {**caddy, "networkMode": "container:" + "f" * 64}  # the ports container was replaced
    assert "networkMode" in CONTAINER_FORCE_NEW
    assert plan.decide(plan.CONTAINER, old, moved, WEB_OPTIONS, CONTAINER_FORCE_NEW).action == "replace"


# --------------------------------------------------------------------------- docker_service (a stack on a cluster)


def cluster_web_service() -> Registration:
    from tests.conftest import full_config
    from tests.harness import run_program

    raw, secrets = full_config()
    run = run_program({**raw, "cluster": {"enabled": True, "spread": "node.labels.zone"}}, secrets, stack="prod")
    return next(r for r in run.of_type(plan.SERVICE) if r.name.startswith("web-"))


def read_back(inputs: dict[str, Any]) -> dict[str, Any]:
    """What the provider stores for a service created from `inputs`: the spec it sends (durations in
    nanoseconds, env as NAME=value lines, networks as targets), as the daemon keeps it with the platforms
    Create asked the registry for, read back by readback.service_state."""
    from tests.e2e.replay.readback import service_state

    body = providers.service_spec_body(inputs)
    body["TaskTemplate"]["Placement"]["Platforms"] = [{"Architecture": "amd64", "OS": "linux"}]
    body["TaskTemplate"]["RestartPolicy"] = {"Condition": "any", "Delay": 5 * 10**9, "MaxAttempts": 0}  # Swarm's defaults
    info = {"ID": "svc1", "Spec": {**body, "Name": "web-0123456789ab-1234567"}, "Endpoint": {"Spec": {"Mode": "dnsrr"}}}
    return {**service_state(info, inputs), "id": "svc1"}


def test_a_service_read_back_is_no_change_thanks_to_the_programs_ignore_changes() -> None:
    svc = cluster_web_service()
    state = read_back(svc.inputs)
    old = plan.Old(plan.SERVICE, svc.inputs, state, ())
    force = force_new(plan.SERVICE)
    assert plan.decide(plan.SERVICE, old, svc.inputs, svc.options, force).action == "same"
    # without ignoring the platforms Create wrote, the next update would replace the service ("*")
    bare = {**svc.options, "ignoreChanges": []}
    decision = plan.decide(plan.SERVICE, old, svc.inputs, bare, force)
    assert decision.action == "replace" and decision.changed == ("taskSpec",)


def test_a_changed_service_is_replaced_create_first() -> None:
    svc = cluster_web_service()
    old = plan.Old(plan.SERVICE, svc.inputs, read_back(svc.inputs), ())
    changed = copy.deepcopy(svc.inputs)
    changed["taskSpec"]["containerSpec"]["env"]["NEW_SETTING"] = "1"
    decision = plan.decide(plan.SERVICE, old, changed, svc.options, force_new(plan.SERVICE))
    assert decision.action == "replace" and decision.delete_before_replace is False
    assert plan.SERVICE not in plan.PROVIDER_DELETES_FIRST, "pulumi-docker declares no DeleteBeforeReplace for docker_service"
    # a replica count alone is an in-place update for the provider (mode's ForceNew is on the block only), but
    # the program's "*" replaces on any change
    scaled = {**svc.inputs, "mode": {"replicated": {"replicas": 5}}}
    assert plan.decide(plan.SERVICE, old, scaled, svc.options, force_new(plan.SERVICE)).action == "replace"


def test_a_network_named_where_the_provider_reads_an_id_would_replace_on_every_update() -> None:
    svc = cluster_web_service()
    by_name = copy.deepcopy(svc.inputs)
    by_name["taskSpec"]["networksAdvanceds"] = [{"name": "web-prod-edge"}]
    state = read_back({**by_name, "taskSpec": {**by_name["taskSpec"], "networksAdvanceds": [{"id": "n1"}]}})
    decision = plan.decide(plan.SERVICE, plan.Old(plan.SERVICE, by_name, state, ()), by_name, svc.options, force_new(plan.SERVICE))
    assert decision.action == "replace"


def test_the_service_spec_the_provider_sends() -> None:
    svc = cluster_web_service()
    inputs = {**svc.inputs, "taskSpec": {**svc.inputs["taskSpec"], "networksAdvanceds": [{"id": "n-edge"}, {"id": "n-private"}]}}
    body = providers.service_spec_body(inputs)
    spec = body["TaskTemplate"]["ContainerSpec"]
    assert spec["StopGracePeriod"] == 30 * 10**9 and spec["StopSignal"] == "SIGTERM"
    assert spec["Healthcheck"]["Interval"] == 2 * 10**9 and spec["Healthcheck"]["Retries"] == 3
    assert "PORT=8000" in spec["Env"] and spec["CapabilityDrop"] == ["ALL"] and spec["Init"] is True
    assert spec["Mounts"] == [{"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 64 * MB}}]
    assert body["TaskTemplate"]["Placement"]["Preferences"] == [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]
    assert body["TaskTemplate"]["Networks"] == [{"Target": "n-edge", "Aliases": []}, {"Target": "n-private", "Aliases": []}]
    assert body["Mode"] == {"Replicated": {"Replicas": 3}} and body["EndpointSpec"] == {"Mode": "dnsrr"}
    unset = copy.deepcopy(inputs)
    del unset["taskSpec"]["containerSpec"]["stopGracePeriod"]
    assert providers.service_spec_body(unset)["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] == 0, "unset is 0, not Swarm's 10s"


class FakeSwarm:
    """GET /tasks and /nodes as a manager answers them."""

    def __init__(self, tasks: list[dict[str, Any]], down: set[str]) -> None:
        self.tasks, self.down = tasks, down

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        if path == "/nodes":
            return [{"ID": n, "Status": {"State": "down" if n in self.down else "ready"}} for n in ("n1", "n2", "n3")]
        return self.tasks


def test_convergence_counts_one_running_task_per_slot_on_nodes_that_are_up() -> None:
    def task(slot: int, state: str, node: str) -> dict[str, Any]:
        return {"Slot": slot, "NodeID": node, "Status": {"State": state}}

    # slot 1 runs; slot 2's new task is starting (its health check has not passed) beside its old running one
    # on a lost node; slot 3 runs on a node that is down
    tasks = [task(1, "running", "n1"), task(2, "starting", "n2"), task(2, "running", "n3"), task(3, "running", "n3")]
    assert providers.running_tasks(FakeSwarm(tasks, {"n3"}), "svc", 3) == 1  # type: ignore[arg-type]
    assert providers.running_tasks(FakeSwarm(tasks, set()), "svc", 3) == 2  # type: ignore[arg-type]


def test_a_duration_in_gos_long_form_would_replace_the_service_on_every_update() -> None:
    svc = cluster_web_service()
    long_form = copy.deepcopy(svc.inputs)
    long_form["taskSpec"]["containerSpec"]["stopGracePeriod"] = "10m0s"  # what go_duration gives; Read says "10m"
    old = plan.Old(plan.SERVICE, long_form, read_back(long_form), ())
    assert old.outputs["taskSpec"]["containerSpec"]["stopGracePeriod"] == "10m"
    assert plan.decide(plan.SERVICE, old, long_form, svc.options, force_new(plan.SERVICE)).action == "replace"
