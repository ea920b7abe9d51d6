"""The program's release history, rollback planning and secret config on the real Pulumi engine.

The real CLI (tests/real_engine.py: built by `make tools`, or the one on PATH) runs the parts of the
program that need no provider plugin: the stack's config read by `load_config`, the release plan read
from the stack's own previous outputs through a StackReference (`load_release_plan`), and the release
records exported as __main__.py exports them; and the alias components/edge/proxy.py renames its ports holder with,
on a component tree of the same shape. The docker and command providers cannot be built here
(toolchain/README.md), so nothing in this file creates a container.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi import automation as auto

from tests.harness import ROOT, load_stack_file
from tests.real_engine import RealStack, cli_root

pytestmark = pytest.mark.real_engine

if cli_root() is None:
    if os.environ.get("CUTOVER_REQUIRE_E2E") == "1":
        raise RuntimeError("CUTOVER_REQUIRE_E2E=1 and no pulumi CLI: make tools builds it into .tools/bin")
    pytest.skip("no pulumi CLI: make tools builds it into .tools/bin", allow_module_level=True)

SHA = {n: c * 40 for n, c in (("v1", "1"), ("v2", "2"), ("v3", "3"))}


def digest_of(sha: str) -> str:
    return f"cutover/web@sha256:{(sha[:8] * 8)}"


def release_program() -> None:
    """What __main__.py does around the resources: config, release plan (awaited in the entrypoint pulumi.run
    registers, as there), the records it exports."""
    from components.config.load import load_config
    from components.release.plan import load_release_plan, role_summary

    async def main() -> None:
        cfg = load_config()
        plan = await load_release_plan(cfg, os.environ)
        # the image this release runs: a rollback's recorded digest, or (standing in for the build) one per commit
        image_ref = plan.deploy_ref or digest_of(plan.git_sha)
        release, history = plan.records(image_ref, cfg.releases.probation_s, role_summary(cfg))
        pulumi.export("mode", plan.mode)
        pulumi.export("release", release)
        pulumi.export("releases", history)

    pulumi.run(main)


def refs(outputs: dict[str, Any]) -> tuple[str, list[str]]:
    return outputs["release"]["imageRef"], [r["imageRef"] for r in outputs["releases"]]


def test_each_release_reads_the_one_before_and_a_rollback_redeploys_the_previous_digest(tmp_path: Path) -> None:
    stack = RealStack(tmp_path, release_program)
    first = stack.up(CUTOVER_GIT_SHA=SHA["v1"], CUTOVER_ROLLBACK_TO=None)
    # a stack never updated: its StackReference to itself reads no outputs (pulumi pkg/backend/diy/state.go)
    assert first["mode"] == "build" and refs(first) == (digest_of(SHA["v1"]), [])
    stack.up(CUTOVER_GIT_SHA=SHA["v2"])
    third = stack.up(CUTOVER_GIT_SHA=SHA["v3"])
    assert refs(third) == (digest_of(SHA["v3"]), [digest_of(SHA["v2"]), digest_of(SHA["v1"])])

    back = stack.up(CUTOVER_GIT_SHA=SHA["v3"], CUTOVER_ROLLBACK_TO="previous")
    assert back["mode"] == "rollback"
    assert back["release"]["imageRef"] == digest_of(SHA["v2"]) and back["release"]["gitSha"] == SHA["v2"]
    assert refs(back)[1] == [digest_of(SHA["v3"]), digest_of(SHA["v2"]), digest_of(SHA["v1"])]

    by_commit = stack.up(CUTOVER_GIT_SHA=SHA["v3"], CUTOVER_ROLLBACK_TO=SHA["v1"][:7])
    assert by_commit["mode"] == "rollback" and by_commit["release"]["imageRef"] == digest_of(SHA["v1"])


def test_an_impossible_rollback_fails_the_update_and_the_record_stays(tmp_path: Path) -> None:
    stack = RealStack(tmp_path, release_program)
    stack.up(CUTOVER_GIT_SHA=SHA["v1"], CUTOVER_ROLLBACK_TO=None)
    before = stack.outputs()
    with pytest.raises(auto.CommandError) as failed:
        stack.up(CUTOVER_GIT_SHA=SHA["v2"], CUTOVER_ROLLBACK_TO="9" * 12)
    assert "CUTOVER_ROLLBACK_TO" in str(failed.value) and "9" * 12 in str(failed.value)
    # a failed program records nothing: the outputs are the last successful update's
    assert stack.outputs() == before


def main_program() -> None:
    """__main__.py itself, as the language host runs it (runpy, in the stack run_in_stack makes)."""
    import runpy

    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def test_the_program_awaits_the_plan_before_registering_anything_and_an_impossible_one_stops_it(tmp_path: Path) -> None:
    """__main__.py's entrypoint (pulumi.run) reads the stack's own outputs, awaited, before any resource is
    registered: an impossible rollback ends the update with the plan's message, and nothing but the stack exists."""
    stack = RealStack(tmp_path, main_program)
    with pytest.raises(auto.CommandError) as failed:
        stack.up(CUTOVER_GIT_SHA=SHA["v1"], CUTOVER_ROLLBACK_TO="9" * 12)
    text = str(failed.value)
    # (an inline program's server prints the SystemExit with its traceback; the language host, the message alone)
    assert f"SystemExit: CUTOVER_ROLLBACK_TO={'9' * 12}: no such release" in text, text
    state = json.loads(stack.cli("stack", "export", "--stack", "dev").stdout)
    types = [r["type"] for r in state["deployment"].get("resources") or []]
    assert set(types) <= {"pulumi:pulumi:Stack", "pulumi:providers:pulumi", "pulumi:pulumi:StackReference"}, types


def secret_program() -> None:
    from components.config.load import load_config
    from components.config.model import Secret

    cfg = load_config()
    token = cfg.web.secret_env["API_TOKEN"]
    pulumi.export("apiTokenIsSecret", isinstance(token, Secret))
    pulumi.export("plainEnv", cfg.web.env)
    pulumi.export("apiToken", pulumi.Output.secret(token.reveal()))


def test_a_secret_set_with_config_set_secret_is_a_secret_in_the_program_and_never_plain_on_disk(tmp_path: Path) -> None:
    value = "token-" + os.urandom(8).hex()
    stack = RealStack(tmp_path, secret_program)
    stack.config("cutover:secretEnv.API_TOKEN", value, secret=True)
    outputs = stack.up(CUTOVER_GIT_SHA=SHA["v1"])
    # load_config learns which keys are secret from what the engine sends the program
    assert outputs["apiTokenIsSecret"] is True
    assert outputs["plainEnv"] == {"LOG_LEVEL": "info"}
    assert outputs["apiToken"] == value and "apiToken" in stack.secret_outputs()
    assert value not in stack.stack_file() and "secure:" in stack.stack_file()
    state = stack.state()
    assert value not in state and "ciphertext" in state


def test_a_key_the_program_does_not_know_fails_the_update_and_a_secret_one_is_not_shown(tmp_path: Path) -> None:
    """load_config lists the keys the engine sends the program, so a typo is refused, not ignored; its value is
    shown unless the key is a secret."""
    value = "hook-" + os.urandom(8).hex()
    stack = RealStack(tmp_path, secret_program)
    stack.config("cutover:webb.replicas", "2")
    stack.config("cutover:notifyWebhok", value, secret=True)
    with pytest.raises(auto.CommandError) as failed:
        stack.up(CUTOVER_GIT_SHA=SHA["v1"])
    text = str(failed.value)
    # an object arrives as the JSON the stack stores, and is shown so
    assert 'cutover:webb = "{\\"replicas\\":2}": expected one of the known keys' in text and "(did you mean 'web'?)" in text
    assert "cutover:notifyWebhok = [secret]: expected one of the known keys" in text and value not in text


def test_the_cli_reads_the_projects_own_stack_files_as_the_unit_tests_do(tmp_path: Path) -> None:
    """Pulumi.yaml and both stack files load in the real CLI, with the values the unit tests give the program and,
    for a section a stack leaves out, the project's default (Pulumi.yaml `config:`: {}, nothing set)."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    defaults = {k: v["default"] for k, v in project.items() if "default" in v}
    for name in ("dev", "prod"):
        stack = RealStack(tmp_path / name, lambda: None, stack=name)
        read = {
            k.removeprefix("cutover:"): json.loads(v.value) if v.value[:1] in "{[" else v.value
            for k, v in stack.stack.get_all_config().items()
        }
        assert read == {**defaults, **load_stack_file(name)[0]}


def stacks_program() -> None:
    """The order of `github.stacks` as load_config reads it, or the problems it names."""
    from components.config.load import load_config
    from components.config.model import ConfigError

    try:
        pulumi.export("stacks", list(load_config().github.stacks))
    except ConfigError as error:
        pulumi.export("problems", error.problems)


def test_github_stacks_keep_the_deploy_order_as_a_list_and_an_object_of_two_is_refused(tmp_path: Path) -> None:
    """The engine hands an object's keys to the program sorted by name, so only a list says which stack goes first."""
    listed = RealStack(tmp_path / "list", stacks_program)
    listed.config("cutover:github.stacks[0].staging", "staging")
    listed.config("cutover:github.stacks[1].prod", "production")
    assert listed.up(CUTOVER_GIT_SHA=SHA["v1"]) == {"stacks": ["staging", "prod"]}
    mapped = RealStack(tmp_path / "object", stacks_program)
    mapped.config("cutover:github.stacks.staging", "staging")
    mapped.config("cutover:github.stacks.prod", "production")
    assert mapped.stack_file().index("staging:") < mapped.stack_file().index("prod:"), "written in deploy order"
    (problem,) = mapped.up(CUTOVER_GIT_SHA=SHA["v1"])["problems"]
    # as the program got it: prod first
    assert problem.startswith('cutover:github.stacks = {"prod": "production", "staging": "staging"}: expected a list'), problem
    assert problem.endswith("so this one would deploy prod before staging"), problem


class _Edge(pulumi.ComponentResource):
    """The shape of components/edge/proxy.py EdgeProxy: a component whose child holds the ports and a sibling that needs
    it. Both children are components here (no provider plugin can run), registered as the engine sees any child."""

    def __init__(self, name: str, ports_name: str, aliases: list[pulumi.Alias]) -> None:
        super().__init__("cutover:index:EdgeProxy", name, None)
        ports = pulumi.ComponentResource("cutover:test:PortsHolder", ports_name, None, pulumi.ResourceOptions(parent=self, aliases=aliases))
        caddy = pulumi.ComponentResource(
            "cutover:test:Caddy", f"{name}-caddy", None, pulumi.ResourceOptions(parent=self, depends_on=[ports])
        )
        self.register_outputs({"ports": ports.urn, "caddy": caddy.urn})


PORTS = "urn:pulumi:dev::cutover::cutover:index:EdgeProxy$cutover:test:PortsHolder::"


def renamed(tmp_path: Path, aliases: list[pulumi.Alias]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Up with the ports holder named `proxy-container`, then preview and up with it named `proxy-ports`."""
    shape: dict[str, Any] = {"name": "proxy-container", "aliases": []}

    def program() -> None:
        _Edge("proxy", shape["name"], shape["aliases"])

    stack = RealStack(tmp_path, program)
    first = stack.steps()
    assert (PORTS + "proxy-container", "create") in first
    shape.update(name="proxy-ports", aliases=aliases)
    return stack.steps(preview=True), stack.steps()


def test_a_child_renamed_with_an_alias_of_its_old_name_is_the_same_resource(tmp_path: Path) -> None:
    """What components/edge/proxy.py relies on to rename `proxy-container` to `proxy-ports` without replacing it: an Alias with
    only a name keeps the child's parent and type (pulumi/pulumi sdk/python/lib/pulumi/runtime/resource.py
    create_alias_spec; pkg/resource/deploy/step_generator.go collapseAliasToUrn), the engine finds the old state under
    that URN (getOldResource) and, having matched it, does not delete it (GenerateDeletes, isOperatedOn)."""
    preview, up = renamed(tmp_path, [pulumi.Alias(name="proxy-container")])
    for steps in (preview, up):
        assert (PORTS + "proxy-ports", "same") in steps, steps
        assert not [s for s in steps if s[1] != "same"], steps
        assert not [u for u, _ in steps if u == PORTS + "proxy-container"], steps


def test_a_child_renamed_without_an_alias_is_created_anew_and_the_old_one_deleted(tmp_path: Path) -> None:
    """The control: the same rename with no alias is a new resource and a delete (so the test above can fail)."""
    preview, up = renamed(tmp_path, [])
    for steps in (preview, up):
        assert (PORTS + "proxy-ports", "create") in steps, steps
        assert (PORTS + "proxy-container", "delete") in steps, steps


def test_an_alias_that_names_the_root_stack_as_parent_misses_a_child(tmp_path: Path) -> None:
    """An Alias with `parent=ROOT_STACK_RESOURCE` means "it had no parent": for a child of a component it names another
    URN, so the old child is not found (created anew, the old one deleted). The program's alias gives no parent."""
    preview, _ = renamed(tmp_path, [pulumi.Alias(name="proxy-container", parent=pulumi.ROOT_STACK_RESOURCE)])
    assert (PORTS + "proxy-ports", "create") in preview and (PORTS + "proxy-container", "delete") in preview, preview
