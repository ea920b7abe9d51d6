"""Pulumi.yaml's `config:` block: the program's top-level keys with their types, checked by the real CLI.

The CLI checks a stack's values against the project's declared types when an operation starts (`pulumi preview`,
`up`, `refresh`, `destroy`: pulumi/pulumi pkg/workspace/config.go ValidateStackConfigAndApplyProjectConfig,
validateStackConfigValue), before the program runs; `pulumi config set` writes any value
(pkg/cmd/pulumi/config/config.go configSetCmd.Run checks no type). A declared key with no default must be set by
every stack (mergeConfig: "is missing configuration value"); a default is handed to the program as if the stack
had set it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi import automation as auto

from components.config.checks import KNOWN_KEYS, SECRET_KEYS, SECTION_KEYS
from tests.conftest import SSH_KEY
from tests.harness import ROOT
from tests.real_engine import OFFLINE, RealStack, cli_root

SHA = "1" * 40
KNOWN = "203.0.113.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
needs_cli = pytest.mark.skipif(cli_root() is None, reason="no pulumi CLI: make tools builds it into .tools/bin")


def declared() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]


def test_the_project_declares_every_top_level_key_but_the_secrets_with_its_type() -> None:
    config = declared()
    # named without the project: the CLI takes them as the project's own, whatever `name:` says
    assert all(":" not in key for key in config)
    assert set(config) == KNOWN_KEYS - SECRET_KEYS
    sections = {s for s in SECTION_KEYS if "." not in s} | {"roles"}
    assert {k: v["type"] for k, v in config.items()} == {"appName": "string", **dict.fromkeys(sections, "object")}
    # what every stack sets, as the program requires it; each other section is nothing set unless the stack sets it
    assert {k for k, v in config.items() if "default" not in v} == {"appName", "image"}
    assert all(v["default"] == {} for k, v in config.items() if "default" in v)


def seen_program(seen: list[str]) -> Any:
    """load_config as the program runs it: the problems it names, or some values it read."""

    def program() -> None:
        from components.config.load import load_config
        from components.config.model import ConfigError

        seen.append("ran")
        try:
            cfg = load_config()
        except ConfigError as error:
            pulumi.export("problems", error.problems)
            return
        pulumi.export("read", {"appName": cfg.app_name, "replicas": cfg.web.replicas, "backupsKept": cfg.postgres.backups_kept})

    return program


@needs_cli
@pytest.mark.real_engine
@pytest.mark.parametrize("name", ["dev", "prod"])
def test_both_stack_files_pass_the_clis_check_and_nested_keys_set_with_path_reach_the_program(tmp_path: Path, name: str) -> None:
    seen: list[str] = []
    stack = RealStack(tmp_path, seen_program(seen), stack=name)
    if name == "prod":
        # what the stack file's header tells a team to set
        stack.config("cutover:sshPrivateKey", SSH_KEY, secret=True)
        stack.config("cutover:registryPassword", "token", secret=True)
        stack.config("cutover:host.knownHosts", KNOWN)
    # --path into a section the stack file sets, and into one it leaves at the project's default
    stack.config("cutover:web.replicas", "3")
    stack.config("cutover:postgres.backupsKept", "4")
    assert "  cutover:postgres:\n    backupsKept: 4\n" in stack.stack_file()
    outputs = stack.up(CUTOVER_GIT_SHA=SHA)
    assert outputs == {"read": {"appName": "web", "replicas": 3, "backupsKept": 4}}
    assert seen == ["ran"]


@needs_cli
@pytest.mark.real_engine
def test_a_value_of_another_type_is_written_by_config_set_and_refused_before_the_program_runs(tmp_path: Path) -> None:
    seen: list[str] = []
    stack = RealStack(tmp_path, seen_program(seen))
    stack.cli("config", "set", "--stack", "dev", "host", "ssh://deploy@203.0.113.10")  # --path and `.url` forgotten
    assert "cutover:host: ssh://deploy@203.0.113.10" in stack.stack_file()
    for operation in (stack.preview, stack.up):
        with pytest.raises(auto.CommandError) as refused:
            operation(CUTOVER_GIT_SHA=SHA)
        assert "Stack 'dev' with configuration key 'host' must be of type 'object'" in str(refused.value)
    assert seen == []


@needs_cli
@pytest.mark.real_engine
def test_a_stack_without_an_app_name_is_refused_before_the_program_runs(tmp_path: Path) -> None:
    seen: list[str] = []
    stack = RealStack(tmp_path, seen_program(seen))
    stack.cli("config", "rm", "--stack", "dev", "appName")
    with pytest.raises(auto.CommandError) as refused:
        stack.preview(CUTOVER_GIT_SHA=SHA)
    assert "Stack 'dev' is missing configuration value 'appName'" in str(refused.value)
    assert seen == []


@needs_cli
@pytest.mark.real_engine
def test_a_renamed_project_checks_its_own_keys(tmp_path: Path) -> None:
    """Pulumi.yaml `name: shop`: `config set --path` writes shop:* keys, and the declared types apply to them."""
    project = tmp_path / "project"
    project.mkdir()
    text = (ROOT / "Pulumi.yaml").read_text()
    assert text.startswith("name: cutover\n")
    (project / "Pulumi.yaml").write_text(text.replace("name: cutover\n", "name: shop\n", 1))
    (project / "Pulumi.dev.yaml").write_text((ROOT / "Pulumi.dev.yaml").read_text().replace("  cutover:", "  shop:"))
    env = {
        **os.environ,
        **OFFLINE,
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "e2e-passphrase",
        "PULUMI_HOME": str(tmp_path / "pulumi-home"),
    }
    (tmp_path / "state").mkdir()
    root = cli_root()
    assert root is not None
    pulumi_cli = shutil.which("pulumi", path=str(root / "bin"))
    assert pulumi_cli is not None

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([pulumi_cli, *args], cwd=project, env=env, capture_output=True, text=True, timeout=120)

    assert run("stack", "init", "dev").returncode == 0
    assert run("config", "set", "--path", "web.replicas", "2").returncode == 0
    assert run("config", "set", "proxy", "8080").returncode == 0
    stack_file = (project / "Pulumi.dev.yaml").read_text()
    assert "  shop:web:\n" in stack_file and "    replicas: 2\n" in stack_file and '  shop:proxy: "8080"\n' in stack_file
    refused = run("preview")
    assert refused.returncode != 0
    assert "Stack 'dev' with configuration key 'proxy' must be of type 'object'" in refused.stderr + refused.stdout
