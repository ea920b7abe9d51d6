"""The GitHub side: environments, their secrets and variables, and the files only the owning stack commits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.runtime import mocks as pmocks

from components.config.load import parse_config
from components.config.model import GitHubConfig, StackConfig
from components.github.dependabot import render_dependabot
from components.github.pipeline import (
    check_names,
    environment_secrets,
    environment_variables,
    pipeline_args,
    pipeline_secrets,
    repository_files,
    required_checks,
)
from components.github.workflows.render import render_workflows
from components.github.workflows.settings import SKIP_CI_MARKER, WORKFLOW_FILES, WorkflowSettings
from tests.conftest import KNOWN_HOSTS, PROD_SECRETS, SSH_KEY, prod_config
from tests.harness import ROOT, ProgramFailedError, ProgramMocks, ProgramRun, Registration, run_program
from tests.schema import check_registration

SHA = "0123456789abcdef0123456789abcdef01234567"
ENVIRONMENT = "github:index/repositoryEnvironment:RepositoryEnvironment"
POLICY = "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy"
ENV_VARIABLE = "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable"
ENV_SECRET = "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret"
REPO_SECRET = "github:index/actionsSecret:ActionsSecret"
REPO_VARIABLE = "github:index/actionsVariable:ActionsVariable"
FILE = "github:index/repositoryFile:RepositoryFile"
RULESET = "github:index/repositoryRuleset:RepositoryRuleset"
BRANCH = "github:index/branch:Branch"
PROVIDER = "pulumi:providers:github"
REPOSITORY_LEVEL = {FILE, REPO_VARIABLE, RULESET, BRANCH}
PIPELINE_SECRETS = ["PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE"]

BACKEND_URL = "s3://state-bucket-for-tests?region=eu-west-1"
PASSPHRASE = json.loads(PROD_SECRETS["githubSecrets"])["PULUMI_CONFIG_PASSPHRASE"]
EXTRA_SECRET = "extra-github-secret-for-tests"
SECRET_VALUES = [SSH_KEY, PASSPHRASE, BACKEND_URL, EXTRA_SECRET, "ghcr-token-for-tests", "app-secret-for-tests"]


def configured(**github: Any) -> tuple[dict[str, Any], set[str]]:
    """The prod stack's config with more `github.*` keys; all three kinds of GitHub secrets given."""
    raw, secrets = prod_config()
    given = {"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "PULUMI_BACKEND_URL": BACKEND_URL, "SENTRY_DSN": EXTRA_SECRET}
    return {**raw, "github": {**raw["github"], **github}, "githubSecrets": json.dumps(given)}, secrets


def model(raw: dict[str, Any], secrets: set[str], stack: str = "prod") -> StackConfig:
    return parse_config(raw, secrets, stack, SHA)


def github_resources(run: ProgramRun) -> list[Registration]:
    return [r for r in run.registrations if r.type.startswith("github:") or r.type == PROVIDER]


def user_id(login: str) -> int:
    """The id the mocked `github.get_user` invoke answers for a login."""
    result, _ = ProgramMocks({}).call(pmocks.MockCallArgs("github:index/getUser:getUser", {"username": login}, ""))
    return int(result["id"])


def leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in leaves(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in leaves(v, f"{path}[{i}]")]
    return [(path, value)]


def plain_leaks(reg: Registration) -> list[str]:
    """Input paths holding a secret value without being marked secret."""
    found = []
    for path, value in leaves(reg.inputs):
        marked = any(path == s or path.startswith((f"{s}.", f"{s}[")) for s in reg.secret_inputs)
        if isinstance(value, str) and not marked and any(secret in value for secret in SECRET_VALUES):
            found.append(f"{reg.name}: {path}")
    return found


def environment(run: ProgramRun, name: str) -> Registration:
    found = [r for r in run.of_type(ENVIRONMENT) if r.inputs["environment"] == name]
    assert len(found) == 1, [r.inputs["environment"] for r in run.of_type(ENVIRONMENT)]
    return found[0]


def policies(run: ProgramRun, name: str) -> list[str]:
    return [r.inputs["branchPattern"] for r in run.of_type(POLICY) if r.inputs["environment"] == name]


def secrets_of(run: ProgramRun, name: str) -> dict[str, Registration]:
    return {r.inputs["secretName"]: r for r in run.of_type(ENV_SECRET) if r.inputs["environment"] == name}


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    raw, secrets = configured(reviewers=["alice", "bob-ops"], waitTimer="15m", variables={"SENTRY_ENV": "production"})
    return run_program(raw, secrets, stack="prod")


# --- which stack registers what ------------------------------------------------------------------


def test_dev_stack_registers_no_github_resource(dev: tuple[dict[str, Any], set[str]]) -> None:
    run = run_program(*dev)
    assert github_resources(run) == []


def test_every_github_resource_is_a_child_of_the_component_on_the_explicit_provider(run: ProgramRun) -> None:
    component = run.one("cutover:index:GitHubPipeline")
    provider = run.one(PROVIDER)
    assert provider.inputs["owner"] == "acme"
    assert provider.parent == component.urn
    for reg in github_resources(run):
        assert reg.parent == component.urn, reg.name
        if reg.type != PROVIDER:
            assert reg.provider.startswith(provider.urn + "::"), reg.name


def test_token_comes_from_github_token_and_stays_secret(prod: tuple[dict[str, Any], set[str]]) -> None:
    run = run_program(*prod, stack="prod", env={"GITHUB_TOKEN": "ghp_token_for_tests"})
    provider = run.one(PROVIDER)
    assert provider.inputs["token"] == "ghp_token_for_tests"
    assert "token" in provider.secret_inputs


def test_an_impossible_rollback_changes_nothing_on_github(prod: tuple[dict[str, Any], set[str]]) -> None:
    with pytest.raises(ProgramFailedError, match="never been deployed") as err:
        run_program(*prod, stack="prod", env={"CUTOVER_ROLLBACK_TO": "previous"})
    assert err.value.registrations == []


# --- the stack's environment ---------------------------------------------------------------------


def test_production_deploys_only_from_the_default_branch_after_review_and_wait(run: ProgramRun) -> None:
    env = environment(run, "production")
    assert env.inputs["repository"] == "web"
    assert env.inputs["deploymentBranchPolicy"] == {"protectedBranches": False, "customBranchPolicies": True}
    assert env.inputs["reviewers"] == [{"users": [user_id("alice"), user_id("bob-ops")]}]
    assert env.inputs["waitTimer"] == 15
    assert env.inputs["canAdminsBypass"] is False and env.inputs["preventSelfReview"] is True
    policy = next(r for r in run.of_type(POLICY) if r.inputs["environment"] == "production")
    assert policy.inputs["branchPattern"] == "main"
    assert policy.depends_on(env), "the policy is added to the environment once it exists"


def test_no_reviewers_and_no_wait_by_default(prod: tuple[dict[str, Any], set[str]]) -> None:
    env = environment(run_program(*prod, stack="prod"), "production")
    assert "reviewers" not in env.inputs and env.inputs["waitTimer"] == 0


def test_environment_variables_name_the_stack_host_image_and_url(run: ProgramRun) -> None:
    variables = {r.inputs["variableName"]: r.inputs["value"] for r in run.of_type(ENV_VARIABLE)}
    assert variables == {
        "PULUMI_STACK": "prod",
        "DEPLOY_HOST": "ssh://deploy@203.0.113.10:22",
        "IMAGE_REPOSITORY": "ghcr.io/acme/web",
        "PUBLIC_URL": "https://app.example.com",
        "SSH_KNOWN_HOSTS": KNOWN_HOSTS,
        "SENTRY_ENV": "production",
    }
    assert {r.inputs["environment"] for r in run.of_type(ENV_VARIABLE)} == {"production"}
    assert all(r.depends_on(environment(run, "production")) for r in run.of_type(ENV_VARIABLE))


def test_environment_secrets_are_the_ssh_key_and_github_secrets(run: ProgramRun) -> None:
    secrets = secrets_of(run, "production")
    assert sorted(secrets) == ["PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "SENTRY_DSN", "SSH_PRIVATE_KEY"]
    assert secrets["SSH_PRIVATE_KEY"].inputs["value"] == SSH_KEY
    assert secrets["SENTRY_DSN"].inputs["value"] == EXTRA_SECRET
    for reg in secrets.values():
        assert reg.inputs["environment"] == "production"
        assert "value" in reg.secret_inputs, reg.name
        assert "plaintextValue" not in reg.inputs, "the deprecated input is not used"


def test_secrets_never_appear_in_plain_inputs_or_outputs(run: ProgramRun) -> None:
    leaks = [leak for reg in run.registrations for leak in plain_leaks(reg)]
    assert leaks == []
    plain_outputs = json.dumps({k: v for k, v in run.outputs.items() if k not in run.secret_outputs}, default=str)
    assert not [s for s in SECRET_VALUES if s in plain_outputs]


def test_a_local_host_has_no_ssh_secret_or_known_hosts() -> None:
    raw = {
        "appName": "web",
        "image": {"repository": "ghcr.io/acme/web", "push": False},
        "proxy": {"httpPort": 8080, "httpsPort": None},
        "github": {"enabled": True, "owner": "acme", "repository": "web"},
    }
    run = run_program(raw, set(), stack="dev")
    assert sorted(r.inputs["environment"] for r in run.of_type(ENVIRONMENT)) == ["dev", "dev-drift", "dev-preview"]
    assert run.of_type(ENV_SECRET) == []
    variables = {r.inputs["variableName"]: r.inputs["value"] for r in run.of_type(ENV_VARIABLE)}
    assert variables == {
        "PULUMI_STACK": "dev",
        "DEPLOY_HOST": "unix:///var/run/docker.sock",
        "IMAGE_REPOSITORY": "ghcr.io/acme/web",
        "PUBLIC_URL": "http://localhost:8080",
    }
    assert not {r.type for r in run.registrations} & REPOSITORY_LEVEL


# --- what only the owning stack manages ----------------------------------------------------------


def test_only_the_owning_stack_manages_repository_things() -> None:
    raw, secrets = configured(manageRepositoryFiles=False, protectBranch=True)
    run = run_program(raw, secrets, stack="prod")
    assert not {r.type for r in run.registrations} & REPOSITORY_LEVEL
    assert environment(run, "production") and run.of_type(ENV_SECRET)


def test_repository_files_are_the_rendered_workflows_committed_with_skip_ci(run: ProgramRun) -> None:
    # the default github.stacks: prod alone (dev runs on the local engine, never from a runner)
    expected = render_workflows(WorkflowSettings(stacks=("prod",), environments={"prod": "production"}))
    files = {r.inputs["file"]: r for r in run.of_type(FILE)}
    rendered = {f".github/workflows/{n}": t for n, t in expected.items()}
    rendered[".github/dependabot.yml"] = render_dependabot(WorkflowSettings())
    assert {path: reg.inputs["content"] for path, reg in files.items()} == rendered
    for reg in files.values():
        assert SKIP_CI_MARKER in reg.inputs["commitMessage"]
        assert reg.inputs["branch"] == "cutover/pipeline", "never straight to main: a pull request takes them there"
        assert reg.depends_on(run.one(BRANCH))
        assert reg.inputs["overwriteOnCreate"] is True
        assert reg.inputs["repository"] == "web"


def test_the_committed_workflow_files_are_what_the_prod_stack_commits() -> None:
    """So the first `pulumi up` of prod commits nothing new, and the copies in git are the real pipeline."""
    files = repository_files(model(*prod_config()).github)
    for path, content in files.items():
        assert (ROOT / path).read_text(encoding="utf-8") == content, (
            f"{path}: run python -m components.github.workflows --write .github/workflows"
        )


def test_repository_files_follow_the_configured_stacks_and_branch() -> None:
    raw, secrets = configured(stacks=[{"staging": "staging"}, {"prod": "production"}], branch="trunk")
    files = repository_files(model(raw, secrets).github)
    deploy = yaml.safe_load(files[".github/workflows/deploy.yml"])
    assert [j for j in deploy["jobs"] if j != "test"] == ["deploy-staging", "deploy-prod"]
    assert deploy["jobs"]["deploy-staging"]["environment"]["name"] == "staging"
    assert deploy["on"]["push"]["branches"] == ["trunk"]


@pytest.mark.parametrize(
    ("stacks", "jobs"),
    [
        (None, ["prod"]),
        ({"prod": "production"}, ["prod"]),
        ([{"prod": "production"}], ["prod"]),
        ([{"staging": "staging"}, {"prod": "production"}], ["staging", "prod"]),
    ],
    ids=["default", "prod", "prod-in-a-list", "staging-prod"],
)
def test_a_pipeline_without_dev_renders_every_workflow_for_its_stacks(stacks: Any, jobs: list[str]) -> None:
    """What the owning stack commits when github.stacks leaves dev out: every stack's jobs in every workflow."""
    raw, secrets = configured(reviewers=["alice"], **({} if stacks is None else {"stacks": stacks}))
    stacks_of = {"staging": "staging", "prod": "production"}
    run = run_program(raw, secrets, stack="prod")
    files = {r.inputs["file"]: r.inputs["content"] for r in run.of_type(FILE)}
    assert files == repository_files(model(raw, secrets).github)
    workflows = {path.rsplit("/", 1)[-1]: yaml.safe_load(text) for path, text in files.items() if path.startswith(".github/workflows/")}
    assert sorted(workflows) == sorted(WORKFLOW_FILES)
    for name, prefix in (("deploy.yml", "deploy"), ("preview.yml", "preview"), ("rollback.yml", "rollback"), ("drift.yml", "drift")):
        stack_jobs = [j.removeprefix(f"{prefix}-") for j in workflows[name]["jobs"] if j != "test"]
        assert stack_jobs == jobs, name
    assert workflows["rollback.yml"]["on"]["workflow_dispatch"]["inputs"]["stack"]["options"] == jobs
    assert [workflows["deploy.yml"]["jobs"][f"deploy-{s}"]["needs"] for s in jobs] == [["test"], *([f"deploy-{s}"] for s in jobs[:-1])]
    environments = {job["environment"]["name"] for data in workflows.values() for job in data["jobs"].values() if "environment" in job}
    expected = {f"{stacks_of[s]}{suffix}" for s in jobs for suffix in ("", "-preview", "-drift")}
    assert environments == expected, "each stack's three environments, no other"
    assert json.loads(run.one(REPO_VARIABLE).inputs["value"]) == jobs
    contexts = [c["context"] for c in run.one(RULESET).inputs["rules"]["requiredStatusChecks"]["requiredChecks"]]
    assert contexts == ["lint, type-check and test", *(f"preview {s}" for s in jobs)]


def test_the_old_default_with_dev_is_refused_before_anything_is_registered() -> None:
    """dev's file (Pulumi.dev.yaml) puts it on the local engine: from a runner, the runner's own."""
    raw, secrets = configured(stacks=[{"dev": "dev"}, {"prod": "production"}])
    with pytest.raises(ProgramFailedError) as err:
        run_program(raw, secrets, stack="prod")
    assert err.value.registrations == []
    message = str(err.value)
    assert 'cutover:github.stacks = [{"dev": "dev"}, {"prod": "production"}]: expected only stacks on a server' in message
    assert "stack dev's host.url is unix:///var/run/docker.sock (Pulumi.dev.yaml)" in message and "leave dev out" in message


def test_no_repository_secret_exists_for_another_branch_to_read(run: ProgramRun) -> None:
    """Any branch's workflow can read a repository secret; an environment's, only a job its rules admit."""
    assert run.of_type(REPO_SECRET) == []
    stacks = run.one(REPO_VARIABLE)
    assert (stacks.inputs["variableName"], json.loads(stacks.inputs["value"])) == ("PULUMI_STACKS", ["prod"])


def test_the_pulumi_credentials_are_secrets_of_each_environment_of_the_stack(run: ProgramRun) -> None:
    for name in ("production", "production-preview", "production-drift"):
        secrets = secrets_of(run, name)
        assert [k for k in sorted(secrets) if k.startswith("PULUMI_")] == PIPELINE_SECRETS, name
        assert secrets["PULUMI_CONFIG_PASSPHRASE"].inputs["value"] == PASSPHRASE
        assert all("value" in r.secret_inputs for r in secrets.values())
    # the deploy key, the webhook and other secrets stay in the deploy environment
    assert sorted(secrets_of(run, "production-preview")) == PIPELINE_SECRETS == sorted(secrets_of(run, "production-drift"))


def test_pipeline_secrets_not_given_are_not_created(prod: tuple[dict[str, Any], set[str]]) -> None:
    run = run_program(*prod, stack="prod")
    assert sorted(secrets_of(run, "production-preview")) == ["PULUMI_CONFIG_PASSPHRASE"]
    assert pipeline_secrets(model(*prod).github).keys() == {"PULUMI_CONFIG_PASSPHRASE"}


def test_previews_wait_for_a_reviewer_who_did_not_start_the_run(run: ProgramRun) -> None:
    preview = environment(run, "production-preview")
    assert preview.inputs["reviewers"] == environment(run, "production").inputs["reviewers"]
    assert preview.inputs["preventSelfReview"] is True and preview.inputs["canAdminsBypass"] is False
    # a pull request's branch may ask (the reviewer decides), so no branch policy
    assert "deploymentBranchPolicy" not in preview.inputs and policies(run, "production-preview") == []
    assert preview.inputs["waitTimer"] == 0, "the deploy's wait timer is not the preview's"


def test_without_reviewers_no_pull_request_gets_a_preview(prod: tuple[dict[str, Any], set[str]]) -> None:
    run = run_program(*prod, stack="prod")
    preview = environment(run, "production-preview")
    assert "reviewers" not in preview.inputs and preview.inputs["canAdminsBypass"] is False
    assert preview.inputs["deploymentBranchPolicy"] == {"protectedBranches": False, "customBranchPolicies": True}
    assert policies(run, "production-preview") == ["main"]
    # a check that cannot pass on a pull request is not required: the ruleset would block every merge
    contexts = [c["context"] for c in run.one(RULESET).inputs["rules"]["requiredStatusChecks"]["requiredChecks"]]
    assert contexts == ["lint, type-check and test"]


def test_the_drift_check_runs_from_the_default_branch_with_no_reviewer(run: ProgramRun) -> None:
    drift = environment(run, "production-drift")
    assert "reviewers" not in drift.inputs and drift.inputs["canAdminsBypass"] is False
    assert policies(run, "production-drift") == ["main"]


def test_files_go_straight_to_the_branch_only_when_asked() -> None:
    raw, secrets = configured(filesBranch="main")
    run = run_program(raw, secrets, stack="prod")
    assert run.of_type(BRANCH) == []
    assert {r.inputs["branch"] for r in run.of_type(FILE)} == {"main"}


def rendered_check_names(workflows: dict[str, str]) -> list[str]:
    """Check names as a reader of the files finds them: job names of the pull-request workflows, matrix expanded."""
    names = []
    for text in workflows.values():
        data = yaml.safe_load(text)
        if "pull_request" not in data["on"]:
            continue
        for job in data["jobs"].values():
            matrix = job.get("strategy", {}).get("matrix", {})
            if matrix:
                names += [job["name"].replace("${{ matrix.stack }}", stack) for stack in matrix["stack"]]
            else:
                names.append(job["name"])
    return names


def test_ruleset_requires_pull_requests_and_the_checks_the_workflows_report(run: ProgramRun) -> None:
    ruleset = run.one(RULESET)
    # files register in no fixed order; the workflows are read in name order (ci.yml before preview.yml)
    files = [r for r in run.of_type(FILE) if r.inputs["file"].startswith(".github/workflows/")]
    workflows = dict(sorted((r.inputs["file"].rsplit("/", 1)[-1], r.inputs["content"]) for r in files))
    contexts = [c["context"] for c in ruleset.inputs["rules"]["requiredStatusChecks"]["requiredChecks"]]
    assert contexts == rendered_check_names(workflows)
    assert contexts == ["lint, type-check and test", "preview prod"]
    assert "pullRequest" in ruleset.inputs["rules"]
    assert ruleset.inputs["target"] == "branch" and ruleset.inputs["enforcement"] == "active"
    assert ruleset.inputs["conditions"]["refName"]["includes"] == ["refs/heads/main"]
    # Nobody bypasses the rules by default: the workflow files reach main by a pull request too.
    assert ruleset.inputs["bypassActors"] == []


def test_admins_bypass_the_ruleset_only_when_asked() -> None:
    raw, secrets = configured(adminBypass=True)
    ruleset = run_program(raw, secrets, stack="prod").one(RULESET)
    assert ruleset.inputs["bypassActors"] == [{"actorType": "RepositoryRole", "actorId": 5, "bypassMode": "always"}]


def test_ruleset_checks_follow_the_configured_stacks() -> None:
    raw, secrets = configured(stacks=[{"staging": "staging"}, {"prod": "production"}], reviewers=["alice"])
    run = run_program(raw, secrets, stack="prod")
    contexts = [c["context"] for c in run.one(RULESET).inputs["rules"]["requiredStatusChecks"]["requiredChecks"]]
    assert contexts == ["lint, type-check and test", "preview staging", "preview prod"]


def test_no_ruleset_unless_protect_branch() -> None:
    raw, secrets = configured(protectBranch=False)
    run = run_program(raw, secrets, stack="prod")
    assert run.of_type(RULESET) == [] and len(run.of_type(FILE)) == len(WORKFLOW_FILES) + 1  # and dependabot.yml


def test_every_github_resource_matches_the_provider_schema(run: ProgramRun) -> None:
    checked = github_resources(run)
    assert {r.type for r in checked} >= {PROVIDER, ENVIRONMENT, POLICY, ENV_VARIABLE, ENV_SECRET, *REPOSITORY_LEVEL}
    assert [p for r in checked for p in check_registration(r)] == []


# --- pure functions -------------------------------------------------------------------------------


def test_environment_variables_and_secrets_of_the_model() -> None:
    cfg = model(*configured(variables={"SENTRY_ENV": "production"}))
    variables = environment_variables(pipeline_args(cfg))
    assert set(GitHubConfig.RESERVED_VARIABLES) <= set(variables)
    assert variables["SENTRY_ENV"] == "production" and variables["PUBLIC_URL"] == cfg.public_url
    secrets = environment_secrets(pipeline_args(cfg))
    assert secrets["SSH_PRIVATE_KEY"].reveal() == SSH_KEY
    assert SSH_KEY not in repr(secrets)


def test_the_notify_webhook_is_an_environment_secret_of_its_stack() -> None:
    raw, secrets = prod_config()
    hook = "https://hooks.slack.com/services/T000/B000/xyz-for-tests"
    cfg = parse_config({**raw, "notifyWebhook": hook}, secrets | {"notifyWebhook"}, "prod", git_sha=SHA)
    assert environment_secrets(pipeline_args(cfg))["NOTIFY_WEBHOOK"].reveal() == hook
    assert hook not in repr(environment_secrets(pipeline_args(cfg)))
    assert "NOTIFY_WEBHOOK" not in environment_secrets(pipeline_args(parse_config(raw, secrets, "prod", git_sha=SHA)))


def test_required_checks_come_from_pull_request_workflows_only() -> None:
    workflows = render_workflows(WorkflowSettings())
    assert required_checks(workflows) == rendered_check_names(workflows)
    assert required_checks({"deploy.yml": workflows["deploy.yml"]}) == []


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({"name": "test"}, ["test"]),
        ({}, ["build"]),
        ({"name": "e2e on ${{ matrix.os }}", "strategy": {"matrix": {"os": ["a", "b"]}}}, ["e2e on a", "e2e on b"]),
        ({"name": "lint", "strategy": {"matrix": {"py": ["3.11", "3.12"], "os": ["x"]}}}, ["lint (3.11, x)", "lint (3.12, x)"]),
        ({"strategy": {"matrix": {"stack": ["dev"]}}}, ["build (dev)"]),
    ],
)
def test_check_names_expand_the_matrix_like_github(job: dict[str, Any], expected: list[str]) -> None:
    assert check_names("build", job) == expected


@pytest.mark.parametrize(
    "matrix",
    [
        {"stack": ["dev"], "include": [{"stack": "prod"}]},
        "${{ fromJSON(vars.PULUMI_STACKS) }}",
        {"stack": "${{ fromJSON(vars.PULUMI_STACKS) }}"},
    ],
)
def test_check_names_refuse_what_they_cannot_know(matrix: Any) -> None:
    with pytest.raises(ValueError, match="cannot derive"):
        check_names("preview", {"name": "preview ${{ matrix.stack }}", "strategy": {"matrix": matrix}})


def test_check_names_refuse_other_expressions() -> None:
    with pytest.raises(ValueError, match="cannot derive"):
        check_names("x", {"name": "x ${{ matrix.other }}", "strategy": {"matrix": {"stack": ["dev"]}}})


def test_the_workflows_directory_of_this_repository_is_what_repository_files_name() -> None:
    names = {Path(p).name for p in repository_files(model(*prod_config()).github)}
    assert names == {p.name for p in (ROOT / ".github" / "workflows").glob("*.yml")} | {"dependabot.yml"}


# --- what a pull request can reach, from the files and the environments the stack declares -----------


def pull_request_jobs(run: ProgramRun) -> dict[str, dict[str, Any]]:
    jobs = {}
    for reg in run.of_type(FILE):
        data = yaml.safe_load(reg.inputs["content"])
        if reg.inputs["file"].startswith(".github/workflows/") and "pull_request" in data["on"]:
            jobs |= {f"{reg.inputs['file'].rsplit('/', 1)[-1]}/{job_id}": job for job_id, job in data["jobs"].items()}
    return jobs


def readable_before_review(run: ProgramRun, job: dict[str, Any], head_branch: str) -> set[str]:
    """The secrets a job a pull request from `head_branch` starts can read before anyone approved the run."""
    name = job.get("environment", {}).get("name")
    if name is None:
        return {r.inputs["secretName"] for r in run.of_type(REPO_SECRET)}
    env = environment(run, name)
    if env.inputs.get("reviewers") and env.inputs.get("preventSelfReview") and env.inputs.get("canAdminsBypass") is False:
        return set()  # the job waits for a reviewer who did not start the run
    allowed = policies(run, name) if env.inputs.get("deploymentBranchPolicy") else None
    if allowed is not None and head_branch not in allowed:
        return set()  # GitHub refuses the job: the environment admits other branches only
    return set(secrets_of(run, name)) | {r.inputs["secretName"] for r in run.of_type(REPO_SECRET)}


@pytest.mark.parametrize("reviewers", [["alice", "bob-ops"], []], ids=["reviewers", "no-reviewers"])
def test_a_pull_request_reads_no_secret_of_this_stack_before_a_reviewer_approves(reviewers: list[str]) -> None:
    raw, secrets = configured(reviewers=reviewers)
    run = run_program(raw, secrets, stack="prod")
    jobs = pull_request_jobs(run)
    assert sorted(jobs) == ["ci.yml/test", "preview.yml/preview-prod"]
    assert jobs["preview.yml/preview-prod"]["environment"] == {"name": "production-preview"}
    assert set(secrets_of(run, "production-preview")) == {"PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE"}
    for job_id, job in jobs.items():
        assert readable_before_review(run, job, head_branch="feature/x") == set(), job_id


def test_the_check_above_sees_the_hole_it_guards() -> None:
    """The preview as it was: outside any environment, the passphrase a repository secret."""
    run = run_program(*configured(), stack="prod")
    job = pull_request_jobs(run)["preview.yml/preview-prod"]
    del job["environment"]
    run.registrations.append(
        Registration(REPO_SECRET, "passphrase", "urn:x", "", True, {"secretName": "PULUMI_CONFIG_PASSPHRASE"}, {"value"}, [], {}, "", {})
    )
    assert readable_before_review(run, job, head_branch="feature/x") == {"PULUMI_CONFIG_PASSPHRASE"}
    # and an environment whose reviewers a pull request's author could approve alone
    job["environment"] = {"name": "production-preview"}
    preview = environment(run, "production-preview")
    preview.inputs.update(reviewers=[{"users": [1]}], preventSelfReview=False, deploymentBranchPolicy=None)
    assert "PULUMI_CONFIG_PASSPHRASE" in readable_before_review(run, job, head_branch="feature/x")


def test_the_token_permissions_name_every_resource_the_stack_manages(run: ProgramRun) -> None:
    from components.github.pipeline import TOKEN_PERMISSIONS

    managed = {r.type for r in github_resources(run) if r.type != PROVIDER}
    assert managed == set(TOKEN_PERMISSIONS), "a resource type without its permission, or a permission for none"
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("**Token.**") : readme.index("**Config keys**")]
    for typ, permission in TOKEN_PERMISSIONS.items():
        short = typ.rsplit(":", 1)[-1]
        row = next((line for line in table.splitlines() if f"`{short}`" in line), "")
        assert permission.split(":")[0] in row, f"README's token table: {short} needs {permission}"


def test_admin_bypass_and_files_branch_are_checked_and_named() -> None:
    from components.config.model import ConfigError

    raw, secrets = configured(adminBypass="yes", filesBranch="../x")
    with pytest.raises(ConfigError) as err:
        model(raw, secrets)
    assert 'cutover:github.adminBypass = "yes": expected true or false' in str(err.value)
    assert 'cutover:github.filesBranch = "../x": expected a branch name' in str(err.value)


def test_a_stack_outside_github_stacks_names_its_environments_after_its_own() -> None:
    raw, secrets = configured(environment="production-eu", reviewers=["alice"])
    run = run_program(raw, secrets, stack="prod-eu")
    assert sorted(r.inputs["environment"] for r in run.of_type(ENVIRONMENT)) == [
        "production-eu",
        "production-eu-drift",
        "production-eu-preview",
    ]
