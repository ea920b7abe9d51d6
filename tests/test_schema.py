"""Every resource the program registers conforms to the real provider schemas."""

from __future__ import annotations

import pytest

from tests.conftest import full_config, prod_config
from tests.harness import Registration, load_stack_file, run_program
from tests.schema import check_registration, is_provider_resource

SHA = "0123456789abcdef0123456789abcdef01234567"
ROLES = {
    "worker": {"command": ["python", "-m", "worker"], "replicas": 2, "healthcheck": {"command": ["python", "-m", "heartbeat", "30"]}},
    "bot": {"command": ["python", "-m", "bot"], "overlap": False, "healthcheck": {"command": ["python", "-m", "heartbeat", "10"]}},
}


def with_roles() -> tuple[dict, set[str]]:
    raw, secrets = full_config()
    return {**raw, "roles": ROLES}, secrets


def bot_alone() -> tuple[dict, set[str]]:
    raw, secrets = full_config()
    return {**raw, "web": {"enabled": False}, "roles": {"bot": ROLES["bot"]}}, secrets


def on_cluster() -> tuple[dict, set[str]]:
    raw, secrets = full_config()
    cluster = {"enabled": True, "placement": ["node.role==worker"], "spread": "node.labels.zone"}
    return {**raw, "cluster": cluster, "roles": {"worker": ROLES["worker"]}}, secrets


CONFIGS = {
    "dev": lambda: load_stack_file("dev"),
    "prod": prod_config,
    "everything-on": full_config,
    "web-and-roles": with_roles,
    "bot-alone": bot_alone,
    "cluster": on_cluster,
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_registered_resource_matches_its_provider_schema(name: str) -> None:
    raw, secrets = CONFIGS[name]()
    run = run_program(raw, secrets, stack="prod" if name != "dev" else "dev")
    checked = [r for r in run.registrations if is_provider_resource(r)]
    assert len(checked) >= 8, [r.type for r in run.registrations]
    if name != "dev":  # the GitHub side is on in these configs: its resources are checked too
        assert {"pulumi:providers:github", "github:index/repositoryFile:RepositoryFile"} <= {r.type for r in checked}
    problems = [p for r in checked for p in check_registration(r)]
    assert problems == []


def test_rollback_and_promotion_programs_conform_too() -> None:
    raw, secrets = prod_config()
    previous = {
        "imageRef": f"ghcr.io/acme/web@sha256:{'a' * 64}",
        "tag": "old",
        "gitSha": "a" * 40,
        "deployedAt": "2026-01-01T00:00:00Z",
        "source": "build",
    }
    current = {**previous, "imageRef": f"ghcr.io/acme/web@sha256:{'b' * 64}", "tag": "new"}
    refs = {"organization/cutover/prod": {"release": current, "releases": [previous]}}
    run = run_program(raw, secrets, stack="prod", stack_outputs=refs, env={"CUTOVER_ROLLBACK_TO": "1"})
    problems = [p for r in run.registrations if is_provider_resource(r) for p in check_registration(r)]
    assert problems == []


def _reg(typ: str, inputs: dict) -> Registration:
    return Registration(typ, "x", "urn", "", True, inputs, set(), [], {}, "", {})


def test_the_check_reports_unknown_missing_and_mistyped_inputs() -> None:
    problems = check_registration(
        _reg(
            "docker:index/container:Container",
            {"imgae": "x", "memory": "512m", "healthcheck": {"tests": "python"}, "ports": [{"external": 80}]},
        )
    )
    text = "\n".join(problems)
    assert "imgae: unknown property" in text
    assert ".image: required property missing" in text
    assert ".memory: expected integer" in text
    assert ".healthcheck.tests: expected array" in text
    assert ".ports[0].internal: required property missing" in text
    assert check_registration(_reg("docker:index/nothing:Nothing", {})) == [
        "x: docker:index/nothing:Nothing is not a resource of the docker provider"
    ]
