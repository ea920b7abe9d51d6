"""The policy pack (policy/): each rule alone, then the program's own registrations fed through it.

A run of the program under Pulumi's mocks (tests/harness.py) is not a preview: no engine and no
provider take part, so the inputs are the program's as it sends them, before the provider's Check
(which adds autonames and defaults). Each captured registration goes to pulumi-policy's own analyzer
servicer as the AnalyzeRequest the engine would send (secrets and unknowns marked as on the wire),
with the stack's config in PULUMI_CONFIG as the language host gives it to a pack.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy
from pulumi_policy.policy import _PolicyAnalyzerServicer

import components.edge.containers
import components.edge.proxy
import components.host.containers
import components.host.docker_host
import components.release.web
import policy.pack
from policy import rules
from policy.pack import PACK_NAME, POLICIES, stack_settings
from policy.rules import RULES, UNKNOWN, Resource, StackFacts, check_all
from tests.harness import ROOT, ProgramRun, Registration, config_values, run_program
from tests.test_program import web_containers
from tests.test_schema import CONFIGS

SECRET = "app-secret-for-tests"
MANDATORY = {r.name for r in RULES if r.mandatory}
DIGEST = "sha256:" + "ab" * 32
# how an unknown string travels to the analyzer (pulumi-policy proxy.py UNKNOWN_STRING_VALUE)
UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


@pytest.fixture(autouse=True)
def _no_pulumi_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PULUMI_CONFIG", "PULUMI_STACK", "PULUMI_PROJECT", "PULUMI_DRY_RUN"):
        monkeypatch.delenv(name, raising=False)


# --- the pack as the analyzer runs it ---------------------------------------------------------


def servicer() -> _PolicyAnalyzerServicer:
    """The analyzer pulumi-policy serves (what PolicyPack(...) would serve), without its gRPC server."""
    return _PolicyAnalyzerServicer(PACK_NAME, "1.0.0", list(POLICIES), EnforcementLevel.MANDATORY)


def request_of(reg: Registration) -> analyzer_pb2.AnalyzeRequest:
    dbr = reg.options.get("deleteBeforeReplace", False)
    options = analyzer_pb2.AnalyzerResourceOptions(
        deleteBeforeReplace=dbr, deleteBeforeReplaceDefined=reg.options.get("deleteBeforeReplaceDefined", False)
    )
    return analyzer_pb2.AnalyzeRequest(urn=reg.urn, type=reg.type, name=reg.name, properties=reg.wire, options=options)


def analyze(run: ProgramRun, config: dict[str, Any], stack: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int, str]]:
    """(resource, rule, enforcement level, message) of every diagnostic, for every registration."""
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config_values(config)))
    monkeypatch.setenv("PULUMI_STACK", stack)
    analyzer = servicer()
    found = []
    for reg in run.registrations:
        for d in analyzer.Analyze(request_of(reg), None).diagnostics:
            found.append((reg.name, d.policyName, d.enforcementLevel, d.message))
    return found


def mandatory(found: list[tuple[str, str, int, str]]) -> list[tuple[str, str, int, str]]:
    return [f for f in found if f[2] == analyzer_pb2.MANDATORY]


def e2e_stack() -> tuple[dict[str, Any], set[str]]:
    """The stack the e2e scenarios deploy (tests/e2e/replay/stack.py), with this file's stand-in host and registry."""
    from tests.conftest import SSH_KEY
    from tests.e2e.replay.stack import SECRET_KEYS, e2e_config

    raw = e2e_config(
        ssh_url="ssh://deploy@127.0.0.1:2222",
        known_hosts="[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTests",
        private_key=SSH_KEY,
        registry="127.0.0.1:5000",
        registry_user="cutover",
        registry_password="registry-password-for-tests",
        http_port=18080,
    )
    return {**raw, "postgres": {"enabled": True}, "postgresPassword": "pg-password-for-tests"}, {*SECRET_KEYS, "postgresPassword"}


STACKS = {**CONFIGS, "e2e": e2e_stack}


def run_config(name: str) -> tuple[ProgramRun, dict[str, Any], str]:
    raw, secrets = STACKS[name]()
    stack = "dev" if name == "dev" else "prod"
    return run_program(raw, secrets, stack=stack), raw, stack


@pytest.mark.parametrize("name", sorted(STACKS))
def test_the_projects_own_stacks_pass_every_mandatory_rule(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run, raw, stack = run_config(name)
    assert sum(r.type in (rules.CONTAINER, rules.SERVICE) for r in run.registrations) >= 3
    found = analyze(run, raw, stack, monkeypatch)
    assert mandatory(found) == []
    # what is left is advisory and expected: the infrastructure images by tag (caddy:2, docker:28-cli, ...)
    advisories = {(res, rule) for res, rule, _, _ in found}
    assert advisories and {rule for _, rule in advisories} == {"infrastructure-images-pinned"}
    assert {"proxy-image", "proxy-keeper-image"} <= {res for res, _ in advisories} or name == "bot-alone"


def test_a_rollback_passes_every_mandatory_rule_too(monkeypatch: pytest.MonkeyPatch) -> None:
    raw, secrets = CONFIGS["prod"]()
    previous = {"imageRef": f"ghcr.io/acme/web@{DIGEST}", "tag": "old", "gitSha": "a" * 40, "deployedAt": "2026-01-01T00:00:00Z"}
    current = {**previous, "imageRef": f"ghcr.io/acme/web@sha256:{'cd' * 32}", "tag": "new"}
    refs = {"organization/cutover/prod": {"release": current, "releases": [{**previous, "source": "build"}]}}
    run = run_program(raw, secrets, stack="prod", stack_outputs=refs, env={"CUTOVER_ROLLBACK_TO": "1"})
    assert run.one(rules.REMOTE_IMAGE, "web-image").inputs["name"] == f"ghcr.io/acme/web@{DIGEST}"
    assert mandatory(analyze(run, raw, "prod", monkeypatch)) == []


def test_inputs_unknown_as_a_preview_sends_them_are_not_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    """A preview of a new build sends the app pull's `name` and the containers' `image` as unknowns. The
    mock run resolves every output, so those inputs are set unknown here by hand, as the wire carries
    them. The rules skip what they cannot see and still check the rest."""
    raw, secrets = CONFIGS["prod"]()
    run = run_program(raw, secrets, stack="prod", preview=True)  # the dry-run flag the program sees in a preview
    for reg in run.registrations:
        key = {rules.CONTAINER: "image", rules.REMOTE_IMAGE: "name"}.get(reg.type)
        if key and (reg.type == rules.CONTAINER or reg.name == "web-image"):
            reg.wire[key] = UNKNOWN_STRING
    found = analyze(run, raw, "prod", monkeypatch)
    assert mandatory(found) == []
    assert not [f for f in found if "can't run policy" in f[3]], "an unknown input never aborts a rule"
    # and the same unknown image does not hide a broken log rotation
    monkeypatch.delitem(components.host.containers.HARDENING, "log_opts")
    run = run_program(raw, secrets, stack="prod", preview=True)
    for reg in run.of_type(rules.CONTAINER):
        reg.wire["image"] = UNKNOWN_STRING
    assert {f[1] for f in mandatory(analyze(run, raw, "prod", monkeypatch))} == {"log-rotation"}


# --- each mandatory rule refuses a variant -------------------------------------------------------


def refused(run: ProgramRun, raw: dict[str, Any], stack: str, monkeypatch: pytest.MonkeyPatch, rule: str) -> list[tuple[str, str]]:
    found = mandatory(analyze(run, raw, stack, monkeypatch))
    assert found, "the variant was not refused"
    assert {f[1] for f in found} == {rule}, found
    return [(res, message) for res, _, _, message in found]


def prod_variant(**changes: Any) -> tuple[ProgramRun, dict[str, Any]]:
    raw, secrets = CONFIGS["prod"]()
    raw = {**raw, **changes}
    return run_program(raw, secrets, stack="prod"), raw


def test_app_image_by_digest_refuses_a_container_run_by_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    # a program change: the containers run the pushed tag instead of the image pulled by digest
    monkeypatch.setattr(components.release.web, "release_image", lambda cfg, ref, pulled: "ghcr.io/acme/web:0123456789ab")
    run, raw = prod_variant()
    found = refused(run, raw, "prod", monkeypatch, "app-image-by-digest")
    assert {res for res, _ in found} == {r.name for r in web_containers(run)}
    assert "input `image` is 'ghcr.io/acme/web:0123456789ab', a tag; an app container runs a digest" in found[0][1]


def test_web_healthcheck_refuses_a_start_period_longer_than_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # the stack's config refuses such a wait first (cutover:web.waitTimeout); a program that sends one anyway
    real = components.release.web.web_container
    monkeypatch.setattr(components.release.web, "web_container", lambda *a: {**real(*a), "wait_timeout": 5})
    run, raw = prod_variant()
    found = refused(run, raw, "prod", monkeypatch, "web-healthcheck")
    assert len(found) == 2  # both web replicas
    assert "input `waitTimeout` is 5s, but `healthcheck.startPeriod` + `.interval` is 12s" in found[0][1]


def test_no_host_access_refuses_a_privileged_container(monkeypatch: pytest.MonkeyPatch) -> None:
    real = components.release.web.web_container
    monkeypatch.setattr(components.release.web, "web_container", lambda *a: {**real(*a), "privileged": True, "network_mode": "host"})
    run, raw = prod_variant()
    found = refused(run, raw, "prod", monkeypatch, "no-host-access")
    messages = " ".join(m for _, m in found)
    assert "input `privileged` is true" in messages and "input `networkMode` is 'host'" in messages


def test_no_host_access_refuses_the_socket_anywhere_but_in_the_keeper(monkeypatch: pytest.MonkeyPatch) -> None:
    real = components.edge.containers.proxy_container
    socket = [{"host_path": "/var/run/docker.sock", "container_path": "/var/run/docker.sock"}]
    monkeypatch.setattr(components.edge.containers, "proxy_container", lambda *a: {**(p := real(*a)), "volumes": [*p["volumes"], *socket]})
    monkeypatch.setattr(components.edge.proxy, "proxy_container", components.edge.containers.proxy_container)
    run, raw = prod_variant()
    found = refused(run, raw, "prod", monkeypatch, "no-host-access")
    assert [res for res, _ in found] == ["web-prod-proxy"]
    assert "is '/var/run/docker.sock', the Docker engine's socket (root on the host); only the proxy keeper mounts it" in found[0][1]


def test_log_rotation_refuses_containers_without_a_max_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(components.host.containers.HARDENING, "log_opts")
    run, raw = prod_variant()
    found = refused(run, raw, "prod", monkeypatch, "log-rotation")
    assert len(found) == len(run.of_type(rules.CONTAINER)) >= 5
    assert "input `logOpts` is None; the json-file log driver rotates only with a max-size" in found[0][1]


def test_secrets_stay_secret_refuses_a_secret_pasted_into_plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    raw, _ = CONFIGS["prod"]()
    run, raw = prod_variant(web={**raw["web"], "env": {"API_TOKEN": SECRET}})
    found = refused(run, raw, "prod", monkeypatch, "secrets-stay-secret")
    assert len(found) == 2 and "(API_TOKEN) holds the value of a secret config key under a plain name" in found[0][1]
    assert not any(SECRET in m for _, m in found), "no message repeats the secret"


def test_secrets_stay_secret_refuses_a_secret_in_a_command_or_a_label(monkeypatch: pytest.MonkeyPatch) -> None:
    raw, _ = CONFIGS["prod"]()
    real = components.release.web.labels
    monkeypatch.setattr(
        components.release.web,
        "labels",
        lambda identity, role, extra=None: [*real(identity, role, extra), {"label": "token", "value": SECRET}],
    )
    run, raw = prod_variant(web={**raw["web"], "command": ["uvicorn", "main:app", "--token", SECRET]})
    found = refused(run, raw, "prod", monkeypatch, "secrets-stay-secret")
    messages = " ".join(m for _, m in found)
    assert "input `command` holds the value of a secret config key" in messages and "input `labels[" in messages
    assert SECRET not in messages


def test_ssh_host_key_pinned_refuses_a_provider_that_trusts_any_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(components.host.docker_host, "docker_ssh_options", lambda host: ["-o", "StrictHostKeyChecking=no"])
    run, raw = prod_variant()
    found = refused(run, raw, "prod", monkeypatch, "ssh-host-key-pinned")
    assert [res for res, _ in found] == ["host-docker"]
    assert "input `sshOpts` has StrictHostKeyChecking=no and no pinned key for ssh://deploy@203.0.113.10:22" in found[0][1]


def test_zero_downtime_replacement_refuses_delete_first_app_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi

    monkeypatch.setattr(
        components.release.web, "WEB_CONTAINER_OPTIONS", pulumi.ResourceOptions(delete_before_replace=True, replace_on_changes=["*"])
    )
    run, raw = prod_variant()
    found = refused(run, raw, "prod", monkeypatch, "zero-downtime-replacement")
    assert len(found) == 2 and "option `deleteBeforeReplace` is True" in found[0][1]


def test_every_mandatory_rule_has_a_refused_variant() -> None:
    tests = {name for name in globals() if name.startswith("test_")}
    for rule in MANDATORY:
        assert any(t.startswith(f"test_{rule.replace('-', '_')}_refuses") for t in tests), rule


# --- what the analyzer hands a validation -------------------------------------------------------


def test_a_validation_gets_secrets_as_plain_values_and_unknowns_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fact secrets-stay-secret is written against: the secret mark is gone, the value is plain."""
    from google.protobuf import struct_pb2

    seen: dict[str, Any] = {}

    def record(args: Any, report: Any) -> None:
        seen["envs"] = list(args.props["envs"])
        seen["image"] = policy.pack.plain(args.props)["image"]

    props = struct_pb2.Struct()
    props.update(
        {
            "envs": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": [f"SECRET_KEY={SECRET}"]},
            "image": UNKNOWN_STRING,
        }
    )
    probe = ResourceValidationPolicy(name="probe", description="probe", validate=record)
    analyzer = _PolicyAnalyzerServicer(PACK_NAME, "1.0.0", [probe], EnforcementLevel.MANDATORY)
    analyzer.Analyze(analyzer_pb2.AnalyzeRequest(urn="u", type=rules.CONTAINER, name="c", properties=props), None)
    assert seen == {"envs": [f"SECRET_KEY={SECRET}"], "image": UNKNOWN}


def test_the_program_keeps_secret_what_the_rule_allows_in_env(full: tuple[dict[str, Any], set[str]]) -> None:
    """The mock run's half of secrets-stay-secret: every container or service whose env holds a secret
    value sends that env as a Pulumi secret."""
    for raw, secrets, stack in ((*full, "prod"), (*CONFIGS["cluster"](), "prod")):
        run = run_program(raw, secrets, stack=stack)
        facts = StackFacts.from_config(config_values(raw))
        assert SECRET in facts.secret_values
        holding = []
        for reg in run.registrations:
            env = (
                reg.inputs.get("envs")
                if reg.type == rules.CONTAINER
                else ((reg.inputs.get("taskSpec") or {}).get("containerSpec") or {}).get("env")
            )
            if env and any(s in json.dumps(env) for s in facts.secret_values):
                holding.append(reg.name)
                key = "envs" if reg.type == rules.CONTAINER else "taskSpec"
                assert key in reg.secret_inputs or any(p.startswith(key) for p in reg.secret_inputs), reg.name
        assert len(holding) >= 3, holding


# --- the rules alone ----------------------------------------------------------------------------


def container(role: str = "web", **props: Any) -> Resource:
    base = {
        "image": DIGEST,
        "labels": [{"label": "cutover.role", "value": role}],
        "logDriver": "json-file",
        "logOpts": {"max-size": "10m"},
        "healthcheck": {"tests": ["CMD", "true"], "interval": "2s", "timeout": "3s", "startPeriod": "10s"},
        "wait": True,
        "waitTimeout": 120,
    }
    return Resource(rules.CONTAINER, f"{role}-c", {**base, **props}, delete_before_replace=False)


FACTS = StackFacts.from_config(
    {
        "cutover:secretEnv": json.dumps({"SECRET_KEY": SECRET}),
        "cutover:redisPassword": "short",
        "cutover:image": '{"repository": "ghcr.io/acme/web"}',
    }
)


def test_a_hardened_container_passes_the_mandatory_rules() -> None:
    assert set(check_all(container(), FACTS)) == {"app-containers-hardened"}


@pytest.mark.parametrize("image", ["ghcr.io/acme/web:abc", "web", "ghcr.io/acme/web:v1@sha256:123"])
def test_a_tag_is_refused_and_an_unknown_image_is_not_judged(image: str) -> None:
    assert rules.app_image_by_digest(container(image=image), FACTS)
    assert rules.app_image_by_digest(container(image=UNKNOWN), FACTS) == []
    assert rules.app_image_by_digest(container(image=f"ghcr.io/acme/web@{DIGEST}"), FACTS) == []
    assert rules.app_image_by_digest(container("proxy", image="caddy:2"), FACTS) == [], "not an app container"


def test_the_apps_pull_by_tag_is_refused_and_other_images_are_advised() -> None:
    pull = Resource(rules.REMOTE_IMAGE, "web-image", {"name": "ghcr.io/acme/web:0123"})
    assert "the app's image by a tag" in rules.app_image_by_digest(pull, FACTS)[0]
    assert rules.infrastructure_images_pinned(pull, FACTS) == []
    caddy = Resource(rules.REMOTE_IMAGE, "proxy-image", {"name": "caddy:2"})
    assert rules.app_image_by_digest(caddy, FACTS) == [] and rules.infrastructure_images_pinned(caddy, FACTS)
    assert rules.infrastructure_images_pinned(Resource(rules.REMOTE_IMAGE, "x", {"name": f"caddy:2@{DIGEST}"}), FACTS) == []


def test_a_service_runs_a_digest_ref_its_nodes_can_pull() -> None:
    spec = {"taskSpec": {"containerSpec": {"image": DIGEST}, "logDriver": {"name": "json-file", "options": {"max-size": "1m"}}}}
    service = Resource(rules.SERVICE, "web-s", {"labels": [{"label": "cutover.role", "value": "worker"}], **spec}, False)
    assert "every node pulls" in rules.app_image_by_digest(service, FACTS)[0]


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"healthcheck": None}, "`healthcheck.tests` is []"),
        ({"healthcheck": {"tests": ["NONE"]}}, "`healthcheck.tests` is ['NONE']"),
        ({"wait": False}, "input `wait` is False"),
        ({"waitTimeout": 11}, "input `waitTimeout` is 11s, but"),
        ({"healthcheck": {"tests": ["CMD", "x"], "interval": "2s", "timeout": "3s", "startPeriod": "soon"}}, "each a duration"),
    ],
)
def test_web_healthcheck_cases(props: dict[str, Any], expected: str) -> None:
    assert expected in rules.web_healthcheck(container(**props), FACTS)[0]


def test_go_durations_are_read_as_the_provider_writes_them() -> None:
    assert [rules.go_seconds(v) for v in ("10s", "1m0s", "1m30s", "1.5s", "500ms", "1h0m0s")] == [10, 60, 90, 1.5, 0.5, 3600]
    assert rules.go_seconds("10") is None and rules.go_seconds(None) is None
    assert rules.web_healthcheck(container(waitTimeout=12), FACTS) == [], "10s + 2s fits in 12s"


def test_the_keeper_may_mount_the_socket_alone_and_without_network() -> None:
    socket = [{"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock"}]
    assert rules.no_host_access(container("proxy-keeper", volumes=socket, networkMode="none"), FACTS) == []
    assert rules.no_host_access(container("proxy-keeper", volumes=socket, networkMode="bridge"), FACTS)
    assert rules.no_host_access(container("proxy-keeper", volumes=[*socket, {"hostPath": "/etc"}], networkMode="none"), FACTS)
    assert rules.no_host_access(container("proxy-keeper", volumes=[{"hostPath": "/var/run"}], networkMode="none"), FACTS)
    bind = [{"type": "bind", "source": "/run/user/1000/docker.sock", "target": "/s"}]
    assert "`mounts[0].source`" in rules.no_host_access(container(mounts=bind), FACTS)[0]
    assert "capability 'SYS_ADMIN'" in rules.no_host_access(container(capabilities={"adds": ["SYS_ADMIN"]}), FACTS)[0]
    assert "`pidMode` is 'host'" in rules.no_host_access(container(pidMode="host"), FACTS)[0]


def test_log_rotation_cases() -> None:
    assert "`logDriver` is not set" in rules.log_rotation(container(logDriver=None), FACTS)[0]
    assert rules.log_rotation(container(logDriver="local", logOpts=None), FACTS) == []
    assert rules.log_rotation(container(logOpts=UNKNOWN), FACTS) == []
    service = Resource(rules.SERVICE, "s", {"taskSpec": {"logDriver": {"name": "json-file", "options": {}}}})
    assert "`taskSpec.logDriver.options` is {}" in rules.log_rotation(service, FACTS)[0]


def test_secrets_are_looked_for_everywhere_a_value_is_plain_text() -> None:
    places = [
        Resource(rules.IMAGE, "app", {"build": {"args": {"TOKEN": SECRET}}}),
        Resource("command:remote:Command", "step", {"create": f"echo {SECRET}"}),
        Resource("github:index/actionsVariable:ActionsVariable", "v", {"value": SECRET}),
        Resource(rules.SERVICE, "s", {"taskSpec": {"containerSpec": {"env": {"LEAK": SECRET}}}}),
        container(healthcheck={"tests": ["CMD", "curl", "-H", f"X: {SECRET}"]}),
    ]
    for r in places:
        assert rules.secrets_stay_secret(r, FACTS), r
    assert rules.secrets_stay_secret(container(envs=[f"SECRET_KEY={SECRET}", "REDIS_URL=redis://:x@redis"]), FACTS) == []
    assert rules.secrets_stay_secret(container(command=["short"]), FACTS) == [], "a value under 8 characters is not searched for"
    assert rules.secrets_stay_secret(container(command=UNKNOWN), FACTS) == []
    assert rules.secrets_stay_secret(container(command=[SECRET]), StackFacts()) == [], "no secret config, nothing to find"


def test_stack_facts_read_every_secret_leaf_and_the_secret_env_names() -> None:
    facts = StackFacts.from_config(
        {
            "cutover:secretEnv": json.dumps({"A_KEY": "aaaaaaaaaa"}),
            "cutover:githubSecrets": json.dumps({"PASS": "bbbbbbbbbb"}),
            "cutover:sshPrivateKey": "-----BEGIN KEY-----",
            "github:token": "ghp_cccccccccc",
            "cutover:web": json.dumps({"env": {"PLAIN": "dddddddddd"}}),
        }
    )
    assert set(facts.secret_values) == {"aaaaaaaaaa", "bbbbbbbbbb", "-----BEGIN KEY-----", "ghp_cccccccccc"}
    assert "A_KEY" in facts.secret_env_names and "DATABASE_URL" in facts.secret_env_names and "PLAIN" not in facts.secret_env_names


def test_ssh_cases() -> None:
    pinned = json.dumps(["-o", "StrictHostKeyChecking=yes", "-o", "KnownHostsCommand=/bin/echo h ssh-ed25519 AAAA"])
    provider = Resource(rules.DOCKER_PROVIDER, "p", {"host": "ssh://d@h:22", "sshOpts": pinned})
    assert rules.ssh_host_key_pinned(provider, FACTS) == []
    assert rules.ssh_host_key_pinned(
        Resource(rules.DOCKER_PROVIDER, "p", {"host": "ssh://d@h", "sshOpts": ["-oStrictHostKeyChecking=yes"]}), FACTS
    )
    assert rules.ssh_host_key_pinned(Resource(rules.DOCKER_PROVIDER, "p", {"host": "unix:///var/run/docker.sock"}), FACTS) == []
    command = Resource(rules.REMOTE_COMMAND, "c", {"connection": {"host": "h", "hostKey": ""}})
    assert "`connection.hostKey` is ''" in rules.ssh_host_key_pinned(command, FACTS)[0]


def test_zero_downtime_and_hardening_cases() -> None:
    delete_first = Resource(rules.CONTAINER, "w", {**container().props, "ports": [{"internal": 8000, "external": 8000}]}, None)
    messages = rules.zero_downtime_replacement(delete_first, FACTS)
    assert "`deleteBeforeReplace` is None" in messages[0] and "only the proxy binds host ports" in messages[1]
    hardened = container(
        user="10001:10001", readOnly=True, capabilities={"drops": ["ALL"]}, securityOpts=["no-new-privileges:true"], memory=512
    )
    assert rules.app_containers_hardened(hardened, FACTS) == []
    assert len(rules.app_containers_hardened(container(user="0:0"), FACTS)) == 5


# --- the pack: its module, its config, its files ------------------------------------------------


def test_importing_the_pack_serves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_server(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a gRPC server was started")

    monkeypatch.setattr("grpc.server", no_server)
    module = importlib.reload(policy.pack)
    assert [(p.name, p.enforcement_level) for p in module.POLICIES] == [
        (r.name, EnforcementLevel.MANDATORY if r.mandatory else EnforcementLevel.ADVISORY) for r in RULES
    ]
    assert {
        "app-image-by-digest", "web-healthcheck", "no-host-access", "log-rotation", "secrets-stay-secret",
        "ssh-host-key-pinned", "zero-downtime-replacement",
    } == MANDATORY  # fmt: skip


def test_serve_builds_the_pack_with_the_stacks_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    built: dict[str, Any] = {}
    monkeypatch.setattr(policy.pack, "PolicyPack", lambda **kwargs: built.update(kwargs))
    monkeypatch.setattr(policy.pack, "STACKS_DIR", tmp_path)
    (tmp_path / "dev.json").write_text('{"app-image-by-digest": "advisory", "log-rotation": {"enforcementLevel": "disabled"}}')
    monkeypatch.setattr(policy.pack, "stack_settings", lambda stack: stack_settings(stack, tmp_path))
    monkeypatch.setenv("PULUMI_STACK", "dev")
    policy.pack.serve()
    assert built["name"] == "cutover-guardrails" and [p.name for p in built["policies"]] == [r.name for r in RULES]
    assert built["initial_config"] == {"app-image-by-digest": EnforcementLevel.ADVISORY, "log-rotation": EnforcementLevel.DISABLED}


def test_a_rule_turned_off_for_a_stack_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(components.host.containers.HARDENING, "log_opts")
    run, raw = prod_variant()
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config_values(raw)))
    analyzer = servicer()
    # what the engine does with the pack's initial config: Configure with the reconciled levels
    from google.protobuf import empty_pb2  # noqa: F401 (Configure returns one)

    config = analyzer_pb2.ConfigureAnalyzerRequest(
        policyConfig={"log-rotation": analyzer_pb2.PolicyConfig(enforcementLevel=analyzer_pb2.DISABLED)}
    )
    analyzer.Configure(config, None)
    found = [d for reg in run.registrations for d in analyzer.Analyze(request_of(reg), None).diagnostics]
    assert not [d for d in found if d.policyName == "log-rotation"]


def test_bad_stack_settings_are_all_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "prod.json").write_text('{"no-such-rule": "disabled", "log-rotation": "off"}')
    with pytest.raises(ValueError, match="no-such-rule") as error:
        stack_settings("prod", tmp_path)
    assert "log-rotation = 'off': expected one of ['advisory', 'disabled', 'mandatory', 'remediate']" in str(error.value)
    (tmp_path / "x.json").write_text("[1]")
    with pytest.raises(ValueError, match="expected an object"):
        stack_settings("x", tmp_path)
    (tmp_path / "y.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        stack_settings("y", tmp_path)
    assert stack_settings("none", tmp_path) == {}


def test_the_pack_runs_in_the_programs_virtualenv() -> None:
    spec = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert spec["runtime"]["name"] == "python" and spec["version"]
    # resolved from the pack's directory: the .venv make and `pulumi install` create from requirements.txt
    assert (ROOT / "policy" / spec["runtime"]["options"]["virtualenv"]).resolve() == (ROOT / ".venv").resolve()
    assert any(line.startswith("pulumi-policy==") for line in (ROOT / "requirements.txt").read_text().splitlines())
    assert (ROOT / "policy" / "__main__.py").exists(), "the language host runs the pack's __main__.py"


def _iter_ids() -> Iterator[str]:
    yield from (r.name for r in RULES)


def test_every_rule_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in _iter_ids():
        assert f"`{name}`" in readme, name


def test_the_pack_serves_as_the_language_host_starts_it(tmp_path: Path) -> None:
    """The command the Python language host runs for a policy pack, `python -u -m pulumi.policy <engine>
    <pack directory>` in that directory (pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go
    RunPlugin): it prints its port and answers the analyzer's gRPC calls on 127.0.0.1."""
    import subprocess
    import sys

    import grpc
    from google.protobuf import empty_pb2, struct_pb2
    from pulumi.runtime.proto import analyzer_pb2_grpc

    raw, _ = CONFIGS["prod"]()
    env = {"PATH": "/usr/bin:/bin", "PULUMI_CONFIG": json.dumps(config_values(raw)), "PULUMI_STACK": "prod"}
    pack_dir = ROOT / "policy"
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(pack_dir)],
        cwd=pack_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().strip() or "0")
        assert port > 0, process.stderr.read() if process.stderr else ""
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            assert info.name == PACK_NAME
            levels = {p.name: p.enforcementLevel for p in info.policies}
            assert levels == {r.name: analyzer_pb2.MANDATORY if r.mandatory else analyzer_pb2.ADVISORY for r in RULES}
            props = struct_pb2.Struct()
            props.update(
                {
                    **container().props,
                    "privileged": True,
                    "envs": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": [f"TOKEN={SECRET}"]},
                }
            )
            request = analyzer_pb2.AnalyzeRequest(urn="urn:pulumi:prod::cutover::x", type=rules.CONTAINER, name="web-x", properties=props)
            found = {(d.policyName, d.enforcementLevel) for d in stub.Analyze(request, timeout=30).diagnostics}
            assert {("no-host-access", analyzer_pb2.MANDATORY), ("secrets-stay-secret", analyzer_pb2.MANDATORY)} <= found
    finally:
        process.kill()
        process.wait(timeout=30)
