"""The drift workflow (components/github/workflows.py drift_workflow): its steps run by bash in a real git
checkout, with a stand-in `pulumi` that answers as the CLI does (exit 255 when --expect-no-changes
finds changes, pkg/cmd/pulumi/operations/preview.go:635)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.github.workflows.render import workflow_data
from components.github.workflows.settings import WorkflowSettings
from tests import lint_tools

DIFF = """Previewing update (prod):
  ~ docker:index/container:Container web-prod-web-1 refresh
  + docker:index/container:Container web-prod-web-1 create
Resources:
    + 1 to create
error: no changes were expected but changes were proposed
"""
UNCHANGED = "Resources:\n    12 unchanged\n"


def drift_steps(settings: WorkflowSettings | None = None, stack: str = "prod") -> dict[str, dict[str, Any]]:
    job = workflow_data(settings or WorkflowSettings())["drift.yml"]["jobs"][f"drift-{stack}"]
    return {step["name"]: step for step in job["steps"]}


class Runner:
    def __init__(self, tmp: Path) -> None:
        lint_tools.require("bash")
        lint_tools.require("jq")
        self.tmp = tmp
        self.repo = tmp / "repo"
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.calls = tmp / "calls.jsonl"
        self.summary = tmp / "summary"
        self.output = tmp / "output"
        self.release: dict[str, Any] | None = None
        self.preview_exit = 0
        self.repo.mkdir()
        for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"]):
            self.git(*args)
        self.commits = [self.commit(f"c{i}") for i in range(3)]

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.repo, check=True, capture_output=True, text=True).stdout.strip()

    def commit(self, name: str) -> str:
        (self.repo / name).write_text(name)
        self.git("add", name)
        self.git("commit", "-q", "-m", name)
        return self.git("rev-parse", "HEAD")

    def run(self, step: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        pulumi = self.bin / "pulumi"
        said = DIFF if self.preview_exit else UNCHANGED
        pulumi.write_text(
            f"""#!/usr/bin/env python3
import json, sys
with open({str(self.calls)!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["stack", "output"]:
    release = {json.dumps(self.release)!r}
    if release == "null":
        sys.stderr.write("error: current stack does not have output property\\n"); sys.exit(255)
    print(release); sys.exit(0)
if sys.argv[1] == "preview":
    sys.stdout.write({said!r}); sys.exit({self.preview_exit})
"""
        )
        pulumi.chmod(pulumi.stat().st_mode | stat.S_IEXEC)
        env = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "GITHUB_OUTPUT": str(self.output),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "RUNNER_TEMP": str(self.tmp),
            "STACK": "prod",
            "DEPLOYED": self.commits[1],
            "HOME": str(self.tmp),
        }
        script = self.tmp / "step.sh"
        script.write_text(step["run"])
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=self.repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def pulumi_calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.calls.read_text().splitlines()] if self.calls.exists() else []


@pytest.fixture()
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


def test_the_check_runs_at_the_commit_the_stack_last_deployed(runner: Runner) -> None:
    runner.release = {"gitSha": runner.commits[1], "tag": runner.commits[1][:12]}
    proc = runner.run(drift_steps()["Check out the commit the stack last deployed"])
    assert proc.returncode == 0, proc.stderr
    assert runner.git("rev-parse", "HEAD") == runner.commits[1]
    assert runner.output.read_text() == f"sha={runner.commits[1]}\n"


@pytest.mark.parametrize("release", [None, {"gitSha": "f" * 40}, {"tag": "no-sha"}])
def test_without_a_deployed_commit_here_the_check_uses_the_branch_and_says_so(runner: Runner, release: Any) -> None:
    runner.release = release
    proc = runner.run(drift_steps()["Check out the commit the stack last deployed"])
    assert proc.returncode == 0, proc.stderr
    assert runner.git("rev-parse", "HEAD") == runner.commits[-1]
    assert "::warning title=No deployed commit::stack prod" in proc.stdout
    assert runner.output.read_text() == f"sha={runner.commits[-1]}\n"


def test_a_server_that_matches_passes_and_says_so(runner: Runner) -> None:
    proc = runner.run(drift_steps()["pulumi preview --refresh --expect-no-changes"])
    assert proc.returncode == 0, proc.stderr
    (call,) = runner.pulumi_calls()
    assert call[:1] == ["preview"] and {"--refresh", "--run-program", "--expect-no-changes", "--diff"} <= set(call)
    assert call[call.index("--stack") + 1] == "prod"
    assert runner.summary.read_text() == f"### Drift: stack prod\nThe server matches what {runner.commits[1]} declares.\n"


def test_drift_fails_the_job_with_the_diff_in_the_summary(runner: Runner) -> None:
    runner.preview_exit = 255
    proc = runner.run(drift_steps()["pulumi preview --refresh --expect-no-changes"])
    assert proc.returncode == 255
    summary = runner.summary.read_text()
    assert "does not match what" in summary and "(pulumi preview exit 255)" in summary
    assert "+ docker:index/container:Container web-prod-web-1 create" in summary and summary.rstrip().endswith("```")
    assert "+ 1 to create" in proc.stdout  # the log has the preview too


def test_the_workflow_runs_daily_and_by_hand_for_every_stack_never_beside_a_deploy() -> None:
    settings = WorkflowSettings(stacks=("qa", "staging", "prod"), environments={"qa": "qa", "staging": "staging", "prod": "production"})
    data = workflow_data(settings)["drift.yml"]
    assert data["on"] == {"schedule": [{"cron": "17 5 * * *"}], "workflow_dispatch": {}}
    assert list(data["jobs"]) == ["drift-qa", "drift-staging", "drift-prod"]
    for stack in settings.stacks:
        job = data["jobs"][f"drift-{stack}"]
        assert job["concurrency"] == {"group": f"deploy-{stack}", "cancel-in-progress": False}
        # the stack's credentials live in an environment only; this one admits the default branch, with no reviewer
        assert job["environment"] == {"name": settings.drift_environment(stack)}
        assert job["steps"][0]["with"]["fetch-depth"] == 0
        names = [s["name"] for s in job["steps"]]
        assert names.index("Install the Pulumi CLI") < names.index("Check out the commit the stack last deployed")
        assert names.index("Check out the commit the stack last deployed") < names.index("Install the program's dependencies")


def test_the_schedule_is_a_setting_and_checked() -> None:
    assert workflow_data(WorkflowSettings(drift_schedule="0 3 * * 1"))["drift.yml"]["on"]["schedule"] == [{"cron": "0 3 * * 1"}]
    with pytest.raises(ValueError, match="drift_schedule: got 'daily', expected a cron schedule of five fields"):
        WorkflowSettings(drift_schedule="daily")
