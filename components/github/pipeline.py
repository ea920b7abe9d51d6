"""The GitHub side of the delivery pipeline, declared: environments, secrets, variables, workflow files, ruleset.

Every stack with ``github.enabled`` manages three environments of its own:

- ``github.environment`` (e.g. ``production``): deploys and rollbacks, from the default branch only,
  with the optional required reviewers and wait timer, and the environment's variables and secrets
  taken from the stack's config;
- ``<environment>-preview``: pull requests' previews of the stack. They run the pull request's own
  code with the stack's credentials, so one of ``github.reviewers`` (never the run's own author)
  must approve each run before its job starts. Without reviewers the environment admits the
  default branch only: a pull request's preview of the stack is refused, never run unreviewed;
- ``<environment>-drift``: the daily drift check, from the default branch only.

No environment lets repository admins bypass its rules. The Pulumi credentials the workflows read
(the backend URL, the stack's own passphrase, any extra secrets) are secrets of these environments
only: no repository secret exists that a workflow on another branch could read.

Exactly one stack, the one with ``github.manageRepositoryFiles: true``, owns what is shared by the
whole repository, so that two stacks never fight over a file: a variable listing the stacks, the
workflow files rendered by ``components.github.workflows`` (committed with ``[skip ci]`` to
``github.filesBranch``, from which a pull request takes them into the default branch), and, with
``github.protectBranch``, a ruleset on the default branch requiring pull requests and the checks
those workflows report, which nobody bypasses unless ``github.adminBypass`` says so.

The token: ``github:token`` from the stack config (a secret; this is how the deploy workflow's
``pulumi up`` gets one), else the ``GITHUB_TOKEN`` environment variable. A fine-grained token on
the one repository needs, per resource, the permissions in ``TOKEN_PERMISSIONS`` (README,
"Setting up GitHub", lists them).

The pure functions below compute everything that needs no Pulumi call.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_github as github
import yaml

from components.config.model import NAMESPACE, GitHubConfig, Secret, StackConfig
from components.github.dependabot import DEPENDABOT_PATH, render_dependabot
from components.github.notifications import NOTIFY_SECRET
from components.github.workflows.render import render_workflows
from components.github.workflows.settings import DRIFT_SUFFIX, PREVIEW_SUFFIX, SKIP_CI_MARKER, WorkflowSettings

WORKFLOWS_DIRECTORY: Final = ".github/workflows"
# Repository variable holding the stacks in deploy order, as a JSON list (`fromJSON(vars.PULUMI_STACKS)`).
STACKS_VARIABLE: Final = "PULUMI_STACKS"
# Base repository role ids of ruleset bypass actors: 5 is the admin role.
ADMIN_ROLE_ID: Final = 5
# The GitHub Actions app: required checks must come from workflow runs, not from anyone able to post a status.
GITHUB_ACTIONS_APP_ID: Final = 15368

# The fine-grained token's repository permissions each resource type needs (GitHub REST API docs, each endpoint's
# "fine-grained access tokens" permission, as octokit/plugin-rest-endpoint-methods.js docs/actions/*.md quote it:
# an environment's secrets need `secrets`, its variables `environments`); Metadata: read comes with every token.
TOKEN_PERMISSIONS: Final[Mapping[str, str]] = {
    "github:index/repositoryEnvironment:RepositoryEnvironment": "Administration: write",
    "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy": "Administration: write",
    "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret": "Secrets: write",
    "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable": "Environments: write",
    "github:index/actionsVariable:ActionsVariable": "Variables: write",
    "github:index/branch:Branch": "Contents: write",
    "github:index/repositoryFile:RepositoryFile": "Contents: write, and Workflows: write for .github/workflows",
    "github:index/repositoryRuleset:RepositoryRuleset": "Administration: write",
}

_MATRIX_EXPRESSION = re.compile(r"\$\{\{\s*matrix\.([A-Za-z0-9_-]+)\s*\}\}")


# --- pure functions ----------------------------------------------------------------------------


def workflow_settings(gh: GitHubConfig) -> WorkflowSettings:
    """The workflow settings of this configuration: its stacks, their environments and the default branch."""
    return WorkflowSettings(
        stacks=tuple(gh.stacks),
        environments=dict(gh.stacks),
        default_branch=gh.branch,
    )


def repository_files(gh: GitHubConfig) -> dict[str, str]:
    """Path in the repository -> content of every file the owning stack commits."""
    settings = workflow_settings(gh)
    files = {f"{WORKFLOWS_DIRECTORY}/{name}": text for name, text in render_workflows(settings).items()}
    files[DEPENDABOT_PATH] = render_dependabot(settings)
    return files


def commit_message(stack: str, path: str) -> str:
    """Message of the commit that updates `path`; the marker keeps GitHub from starting a run for it."""
    return f"Update {path} from stack {stack} {SKIP_CI_MARKER}"


def pipeline_args(cfg: StackConfig) -> GitHubPipelineArgs:
    """The pipeline's args, from the stack's config: its `github` section, and where the stack deploys."""
    return GitHubPipelineArgs(
        stack=cfg.stack,
        github=cfg.github,
        host_url=cfg.host.url,
        image_repository=cfg.image.repository,
        public_url=cfg.public_url,
        known_hosts=cfg.host.known_hosts,
        ssh_private_key=cfg.host.private_key if cfg.host.is_ssh else None,
        notify_webhook=cfg.notify_webhook,
    )


def environment_variables(args: GitHubPipelineArgs) -> dict[str, str]:
    """The deployment environment's variables: what the stack deploys where, then `github.variables`."""
    variables = {
        "PULUMI_STACK": args.stack,
        "DEPLOY_HOST": args.host_url,
        "IMAGE_REPOSITORY": args.image_repository,
        "PUBLIC_URL": args.public_url,
        "SSH_KNOWN_HOSTS": args.known_hosts or "",
    }
    result = {name: value for name, value in variables.items() if value}
    result.update(args.github.variables)
    return result


def environment_secrets(args: GitHubPipelineArgs) -> dict[str, Secret]:
    """The deployment environment's secrets: the SSH key of an ssh:// host, the webhook deploys are announced
    to (components/github/notifications.py), then every `githubSecrets` entry."""
    secrets: dict[str, Secret] = {}
    if args.ssh_private_key is not None:
        secrets["SSH_PRIVATE_KEY"] = args.ssh_private_key
    if args.notify_webhook is not None:
        secrets[NOTIFY_SECRET] = args.notify_webhook
    secrets.update(args.github.secrets)
    return secrets


def pipeline_secrets(gh: GitHubConfig, settings: WorkflowSettings | None = None) -> dict[str, Secret]:
    """The secrets the workflows' pulumi steps read (backend URL, this stack's passphrase, extra secrets), those
    `githubSecrets` gives: secrets of each of the stack's three environments, never of the repository."""
    s = settings or workflow_settings(gh)
    names = (s.backend_url_secret, s.passphrase_secret, *s.extra_secrets)
    return {name: gh.secrets[name] for name in names if name in gh.secrets}


def repository_variables(gh: GitHubConfig) -> dict[str, str]:
    return {STACKS_VARIABLE: json.dumps(list(gh.stacks))}


def _triggers(data: Mapping[Any, Any]) -> set[str]:
    # YAML 1.1 reads an unquoted `on` key as True.
    on = data.get("on", data.get(True))
    if isinstance(on, str):
        return {on}
    return {str(t) for t in on} if isinstance(on, (list, dict)) else set()


def _substitute_matrix(name: str, values: Mapping[str, str]) -> str:
    return _MATRIX_EXPRESSION.sub(lambda m: values.get(m[1], m[0]), name)


def check_names(job_id: str, job: Mapping[str, Any]) -> list[str]:
    """The names of the check runs one job reports: its name, once per matrix combination."""
    name = str(job.get("name", job_id))
    matrix = (job.get("strategy") or {}).get("matrix")
    if not matrix:
        return [name]
    if not isinstance(matrix, dict) or {"include", "exclude"} & set(matrix):
        raise ValueError(f"job {job_id}: cannot derive check names from a dynamic matrix or one with include/exclude")
    axes = dict(matrix)
    if not all(isinstance(v, list) for v in axes.values()):
        raise ValueError(f"job {job_id}: cannot derive check names from a matrix axis given by an expression")
    names = []
    for combination in itertools.product(*axes.values()):
        values = {key: str(value) for key, value in zip(axes, combination, strict=True)}
        if _MATRIX_EXPRESSION.search(name):
            rendered = _substitute_matrix(name, values)
        else:
            # GitHub appends the matrix values when the name does not use them.
            rendered = f"{name} ({', '.join(str(v) for v in combination)})"
        if "${{" in rendered:
            raise ValueError(f"job {job_id}: cannot derive a check name from {name!r}")
        names.append(rendered)
    return names


def required_checks(workflows: Mapping[str, str], refused_environments: Iterable[str] = ()) -> list[str]:
    """The check names of every job that runs on pull requests, read from the rendered workflow files; a job in
    one of `refused_environments` (which admit no pull request) never passes on one, so it is not required."""
    refused = set(refused_environments)
    checks: list[str] = []
    for text in workflows.values():
        data = yaml.safe_load(text)
        if "pull_request" not in _triggers(data):
            continue
        for job_id, job in data["jobs"].items():
            if (job.get("environment") or {}).get("name") in refused:
                continue
            checks += [c for c in check_names(job_id, job) if c not in checks]
    return checks


def _resource_suffix(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# --- the component -----------------------------------------------------------------------------


@dataclass
class GitHubPipelineArgs:
    """What the pipeline is declared from: the `github` section, and what the deploy environment's variables and
    secrets tell the workflows about where the stack deploys."""

    stack: str
    github: GitHubConfig
    host_url: str  # host.url
    image_repository: str  # image.repository
    public_url: str
    known_hosts: str | None = None  # host.knownHosts of an ssh:// host
    ssh_private_key: Secret | None = None  # host.privateKey of an ssh:// host
    notify_webhook: Secret | None = None


class GitHubPipeline(pulumi.ComponentResource):
    """This stack's GitHub environment, its secrets and variables, and the repository files when this stack owns them."""

    provider: github.Provider
    environment: github.RepositoryEnvironment
    preview_environment: github.RepositoryEnvironment
    drift_environment: github.RepositoryEnvironment
    files: dict[str, github.RepositoryFile]
    ruleset: github.RepositoryRuleset | None

    def __init__(self, name: str, args: GitHubPipelineArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:GitHubPipeline", name, None, opts)
        gh = args.github
        if not (gh.enabled and gh.owner and gh.repository and gh.environment):
            raise ValueError("GitHubPipeline needs github.enabled with github.owner, github.repository and github.environment")
        repository = gh.repository

        token = pulumi.Config("github").get_secret("token")
        if token is None and not os.environ.get("GITHUB_TOKEN"):
            pulumi.log.warn("no GitHub token: set github:token (pulumi config set --secret github:token ...) or GITHUB_TOKEN", self)
        # Without a token here, the provider reads GITHUB_TOKEN itself.
        self.provider = github.Provider(f"{name}-provider", owner=gh.owner, token=token, opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)

        reviewers = None
        if gh.reviewers:
            lookup = pulumi.InvokeOutputOptions(parent=self, provider=self.provider)
            users = [github.get_user_output(username=login, opts=lookup).id for login in gh.reviewers]
            ids = pulumi.Output.all(*users).apply(lambda found: [int(i) for i in found])
            reviewers = [github.RepositoryEnvironmentReviewerArgs(users=ids)]
        settings = workflow_settings(gh)
        # named as the workflows name them (WorkflowSettings.preview_environment, drift_environment)
        preview_name = gh.environment + PREVIEW_SUFFIX
        self.environment = self._environment(
            f"{name}-environment", repository, gh.environment, gh.branch, child, reviewers, gh.wait_timer_minutes
        )
        environment = self.environment.environment
        # Pull requests' previews run their own code: with reviewers, any branch may ask and a reviewer who did
        # not start the run approves it; without, the default branch only, so a pull request's preview is refused.
        self.preview_environment = self._environment(
            f"{name}-preview-environment",
            repository,
            preview_name,
            None if reviewers else gh.branch,
            child,
            reviewers,
        )
        self.drift_environment = self._environment(f"{name}-drift-environment", repository, gh.environment + DRIFT_SUFFIX, gh.branch, child)
        if not reviewers:
            pulumi.log.warn(
                f"{NAMESPACE}:github.reviewers is empty: pull requests get no preview of stack {args.stack}"
                f" (environment {preview_name} admits {gh.branch} only); name reviewers to approve them",
                self,
            )
        for key, value in environment_variables(args).items():
            github.ActionsEnvironmentVariable(
                f"{name}-env-var-{_resource_suffix(key)}",
                repository=repository,
                environment=environment,
                variable_name=key,
                value=value,
                opts=child,
            )
        for key, secret in environment_secrets(args).items():
            self._secret(f"{name}-env-secret-{_resource_suffix(key)}", repository, environment, key, secret, child)
        # The pulumi steps' credentials, in the two other environments too (the deploy environment has them above).
        for prefix, env in (("preview", self.preview_environment), ("drift", self.drift_environment)):
            for key, secret in pipeline_secrets(gh, settings).items():
                self._secret(f"{name}-{prefix}-secret-{_resource_suffix(key)}", repository, env.environment, key, secret, child)

        self.files = {}
        self.ruleset = None
        checks: list[str] = []
        if gh.manage_repository_files:
            checks = self._repository_level(name, args, repository, child)
        self.register_outputs(
            {
                "environment": environment,
                "previewEnvironment": self.preview_environment.environment,
                "driftEnvironment": self.drift_environment.environment,
                "files": sorted(self.files),
                "requiredChecks": checks,
            }
        )

    def _environment(
        self,
        resource_name: str,
        repository: str,
        environment: str,
        branch: str | None,
        child: pulumi.ResourceOptions,
        reviewers: list[github.RepositoryEnvironmentReviewerArgs] | None = None,
        wait_timer: int = 0,
    ) -> github.RepositoryEnvironment:
        """An environment admins cannot bypass; `branch`: the only branch that may use it (None: any branch)."""
        env = github.RepositoryEnvironment(
            resource_name,
            repository=repository,
            environment=environment,
            wait_timer=wait_timer,
            reviewers=reviewers,
            # the provider's default is true: admins would skip the reviewers and the branch policy
            can_admins_bypass=False,
            # whoever started the run (a pull request's author) cannot approve it
            prevent_self_review=True if reviewers else None,
            # Deployments only from the branch listed by the policy below.
            deployment_branch_policy=github.RepositoryEnvironmentDeploymentBranchPolicyArgs(
                protected_branches=False, custom_branch_policies=True
            )
            if branch
            else None,
            opts=child,
        )
        if branch:
            # GitHub checks the policy against the branch the run's event is on, a pull request's head branch
            # for its previews (github/docs, "Deployments and environments": deployment branches and tags).
            github.RepositoryEnvironmentDeploymentPolicy(
                f"{resource_name.removesuffix('-environment')}-branch-policy",
                repository=repository,
                environment=env.environment,
                branch_pattern=branch,
                opts=child,
            )
        return env

    def _secret(
        self, resource_name: str, repository: str, environment: pulumi.Input[str], key: str, secret: Secret, child: pulumi.ResourceOptions
    ) -> None:
        github.ActionsEnvironmentSecret(
            resource_name,
            repository=repository,
            environment=environment,
            secret_name=key,
            value=secret.output,
            opts=child,
        )

    def _repository_level(self, name: str, args: GitHubPipelineArgs, repository: str, child: pulumi.ResourceOptions) -> list[str]:
        """What the owning stack manages for the whole repository; returns the required checks."""
        gh = args.github
        settings = workflow_settings(gh)
        for key, value in repository_variables(gh).items():
            github.ActionsVariable(
                f"{name}-repo-var-{_resource_suffix(key)}", repository=repository, variable_name=key, value=value, opts=child
            )
        workflows = render_workflows(settings)
        files_opts = child
        if gh.files_branch != gh.branch:
            branch = github.Branch(
                f"{name}-files-branch", repository=repository, branch=gh.files_branch, source_branch=gh.branch, opts=child
            )
            files_opts = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[branch]))
            pulumi.log.info(
                f"the workflow files are committed to branch {gh.files_branch}, not {gh.branch}:"
                f" a pull request from {gh.files_branch} into {gh.branch} takes them ({NAMESPACE}:github.filesBranch)",
                self,
            )
        else:
            pulumi.log.warn(
                f"{NAMESPACE}:github.filesBranch is {gh.branch!r}: the workflow files are committed straight to {gh.branch},"
                " with no pull request"
                + (
                    "; the ruleset refuses such commits unless github.adminBypass is true"
                    if gh.protect_branch and not gh.admin_bypass
                    else ""
                ),
                self,
            )
        for path, content in repository_files(gh).items():
            self.files[path] = github.RepositoryFile(
                f"{name}-file-{_resource_suffix(path.rsplit('/', 1)[-1])}",
                repository=repository,
                file=path,
                content=content,
                branch=gh.files_branch,
                commit_message=commit_message(args.stack, path),
                overwrite_on_create=True,
                opts=files_opts,
            )
        # without reviewers, this stack's preview environment refuses pull requests (see __init__)
        refused = [] if gh.reviewers else [f"{gh.environment}{PREVIEW_SUFFIX}"]
        checks = required_checks(workflows, refused)
        if gh.protect_branch:
            self.ruleset = self._ruleset(name, gh, repository, checks, child)
        return checks

    def _ruleset(
        self, name: str, gh: GitHubConfig, repository: str, checks: Iterable[str], child: pulumi.ResourceOptions
    ) -> github.RepositoryRuleset:
        return github.RepositoryRuleset(
            f"{name}-ruleset",
            repository=repository,
            name=f"{gh.branch}: pull requests with passing checks",
            target="branch",
            enforcement="active",
            conditions=github.RepositoryRulesetConditionsArgs(
                ref_name=github.RepositoryRulesetConditionsRefNameArgs(includes=[f"refs/heads/{gh.branch}"], excludes=[])
            ),
            # Nobody bypasses the rules unless github.adminBypass asks for it: the workflow files reach the branch by a pull request.
            bypass_actors=[
                github.RepositoryRulesetBypassActorArgs(actor_type="RepositoryRole", actor_id=ADMIN_ROLE_ID, bypass_mode="always")
            ]
            if gh.admin_bypass
            else [],
            rules=github.RepositoryRulesetRulesArgs(
                pull_request=github.RepositoryRulesetRulesPullRequestArgs(),
                required_status_checks=github.RepositoryRulesetRulesRequiredStatusChecksArgs(
                    required_checks=[
                        github.RepositoryRulesetRulesRequiredStatusChecksRequiredCheckArgs(context=c, integration_id=GITHUB_ACTIONS_APP_ID)
                        for c in checks
                    ],
                ),
                deletion=True,
                non_fast_forward=True,
            ),
            opts=child,
        )
