"""The Dependabot configuration: rendered from data, committed equal to the rendering, valid under
Dependabot's JSON schema (check-jsonschema's vendored copy), and kept by the GitHub component."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from components.github.dependabot import DEPENDABOT_PATH, dependabot_config, main, render_dependabot
from components.github.workflows.render import render_workflows
from components.github.workflows.settings import ACTIONS, WorkflowSettings
from tests import lint_tools
from tests.harness import ROOT


def test_committed_file_equals_the_rendering() -> None:
    assert (ROOT / DEPENDABOT_PATH).read_text() == render_dependabot(WorkflowSettings()), "run `make workflows`"


def test_it_covers_the_actions_the_programs_and_the_apps_requirements_and_the_app_image() -> None:
    updates = [(u["package-ecosystem"], u["directory"]) for u in dependabot_config(WorkflowSettings())["updates"]]
    assert updates == [("github-actions", "/"), ("pip", "/"), ("pip", "/app"), ("docker", "/app")]
    for update in dependabot_config(WorkflowSettings())["updates"]:
        assert update["schedule"] == {"interval": "weekly"} and list(update["groups"].values()) == [{"patterns": ["*"]}]
    # what the pip and docker entries update is there
    assert (
        (ROOT / "requirements.txt").is_file() and (ROOT / "app" / "requirements.txt").is_file() and (ROOT / "app" / "Dockerfile").is_file()
    )


def test_a_program_in_a_subdirectory_and_no_app() -> None:
    config = dependabot_config(WorkflowSettings(working_directory="infra"), app_directory=None)
    assert [(u["package-ecosystem"], u["directory"]) for u in config["updates"]] == [("github-actions", "/"), ("pip", "/infra")]
    with pytest.raises(ValueError, match="app_directory: got 'app', expected a directory of the repository like '/app'"):
        dependabot_config(WorkflowSettings(), app_directory="app")


def test_dependabots_schema_accepts_it(tmp_path: Path) -> None:
    path = tmp_path / "dependabot.yml"
    path.write_text(render_dependabot(WorkflowSettings()))
    assert lint_tools.run_check_jsonschema([path], "vendor.dependabot") == []


def test_dependabots_schema_refuses_a_broken_one(tmp_path: Path) -> None:
    data = dependabot_config(WorkflowSettings())
    data["updates"][0]["schedule"] = {"interval": "hourly"}
    path = tmp_path / "dependabot.yml"
    path.write_text(yaml.safe_dump(data))
    findings = lint_tools.run_check_jsonschema([path], "vendor.dependabot")
    assert findings and all(f.tool == "check-jsonschema" for f in findings)


def test_the_write_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / ".github" / "dependabot.yml"
    assert main(["--write", str(target)]) == 0
    assert target.read_text() == render_dependabot(WorkflowSettings())
    assert main([]) == 0 and capsys.readouterr().out.endswith(target.read_text())


def test_every_action_dependabot_would_update_is_in_the_pin_table() -> None:
    """Dependabot rewrites `uses: owner/repo@sha # version` in the workflow files; those are exactly the table's."""
    used = set()
    for text in render_workflows(WorkflowSettings()).values():
        used |= set(re.findall(r"uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (\S+)", text))
    for text in render_workflows(WorkflowSettings(pulumi_cloud_organization="acme")).values():
        used |= set(re.findall(r"uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (\S+)", text))
    assert used == {(a.repository, a.sha, a.version) for a in ACTIONS.values()}
