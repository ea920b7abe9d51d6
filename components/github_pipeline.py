"""The GitHub side of the delivery pipeline, declared: environment, secrets, variables, workflow files, ruleset.

Every stack with ``github.enabled`` manages its own deployment environment
(``github.environment``, e.g. ``production``): deployments from the default
branch only, optional required reviewers and wait timer, and the environment's
variables and secrets taken from the stack's config. Secrets stay Pulumi
secrets all the way to the provider.

Exactly one stack, the one with ``github.manageRepositoryFiles: true``, owns
what is shared by the whole repository, so that two stacks never fight over a
file: the repository-level Actions secrets the preview job needs (it runs
without an environment), a variable listing the stacks, the workflow files
rendered by ``components.workflows`` (committed with ``[skip ci]`` so that the
commit starts no run), and, with ``github.protectBranch``, a ruleset on the
default branch requiring pull requests and the checks those workflows report.

The token: ``github:token`` from the stack config (a secret; this is how the
deploy workflow's ``pulumi up`` gets one), else the ``GITHUB_TOKEN`` environment
variable. A fine-grained token on the one repository needs read and write on
Administration (environments, branch policies, rulesets), Environments,
Secrets, Variables, Contents and Workflows (the files under
``.github/workflows``); a classic token needs the ``repo`` and ``workflow``
scopes, from a repository admin.

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

from components.config import GitHubConfig, Secret, StackConfig
from components.dependabot import DEPENDABOT_PATH, render_dependabot
from components.notifications import NOTIFY_SECRET
from components.workflows import SKIP_CI_MARKER, WorkflowSettings, render_workflows

WORKFLOWS_DIRECTORY: Final = ".github/workflows"
# Repository variable holding the stacks in deploy order, as a JSON list (`fromJSON(vars.PULUMI_STACKS)`).
STACKS_VARIABLE: Final = "PULUMI_STACKS"
# Base repository role ids of ruleset bypass actors: 5 is the admin role.
ADMIN_ROLE_ID: Final = 5
# The GitHub Actions app: required checks must come from workflow runs, not from anyone able to post a status.
GITHUB_ACTIONS_APP_ID: Final = 15368

_MATRIX_EXPRESSION = re.compile(r"\$\{\{\s*matrix\.([A-Za-z0-9_-]+)\s*\}\}")


# --- pure functions ----------------------------------------------------------------------------


def workflow_settings(cfg: StackConfig) -> WorkflowSettings:
    """The workflow settings of this configuration: its stacks, their environments and the default branch."""
    return WorkflowSettings(
        stacks=tuple(cfg.github.stacks),
        environments=dict(cfg.github.stacks),
        default_branch=cfg.github.branch,
    )


def repository_files(cfg: StackConfig) -> dict[str, str]:
    """Path in the repository -> content of every file the owning stack commits."""
    settings = workflow_settings(cfg)
    files = {f"{WORKFLOWS_DIRECTORY}/{name}": text for name, text in render_workflows(settings).items()}
    files[DEPENDABOT_PATH] = render_dependabot(settings)
    return files


def commit_message(cfg: StackConfig, path: str) -> str:
    """Message of the commit that updates `path`; the marker keeps GitHub from starting a run for it."""
    return f"Update {path} from stack {cfg.stack} {SKIP_CI_MARKER}"


def environment_variables(cfg: StackConfig) -> dict[str, str]:
    """The deployment environment's variables: what the stack deploys where, then `github.variables`."""
    variables = {
        "PULUMI_STACK": cfg.stack,
        "DEPLOY_HOST": cfg.host.url,
        "IMAGE_REPOSITORY": cfg.image.repository,
        "PUBLIC_URL": cfg.public_url,
        "SSH_KNOWN_HOSTS": cfg.host.known_hosts,
    }
    result = {name: value for name, value in variables.items() if value}
    result.update(cfg.github.variables)
    return result


def environment_secrets(cfg: StackConfig) -> dict[str, Secret]:
    """The deployment environment's secrets: the SSH key of an ssh:// host, the webhook deploys are announced
    to (components/notifications.py), then every `githubSecrets` entry."""
    secrets: dict[str, Secret] = {}
    if cfg.host.is_ssh and cfg.host.private_key is not None:
        secrets["SSH_PRIVATE_KEY"] = cfg.host.private_key
    if cfg.notify_webhook is not None:
        secrets[NOTIFY_SECRET] = cfg.notify_webhook
    secrets.update(cfg.github.secrets)
    return secrets


def repository_secrets(cfg: StackConfig, settings: WorkflowSettings | None = None) -> dict[str, Secret]:
    """The repository-level secrets the workflows read outside any environment, those `githubSecrets` gives."""
    s = settings or workflow_settings(cfg)
    names = (s.backend_url_secret, s.passphrase_secret, *s.extra_secrets)
    return {name: cfg.github.secrets[name] for name in names if name in cfg.github.secrets}


def repository_variables(cfg: StackConfig) -> dict[str, str]:
    return {STACKS_VARIABLE: json.dumps(list(cfg.github.stacks))}


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


def required_checks(workflows: Mapping[str, str]) -> list[str]:
    """The check names of every job that runs on pull requests, read from the rendered workflow files."""
    checks: list[str] = []
    for text in workflows.values():
        data = yaml.safe_load(text)
        if "pull_request" not in _triggers(data):
            continue
        for job_id, job in data["jobs"].items():
            checks += [c for c in check_names(job_id, job) if c not in checks]
    return checks


def _resource_suffix(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# --- the component -----------------------------------------------------------------------------


@dataclass
class GitHubPipelineArgs:
    config: StackConfig


class GitHubPipeline(pulumi.ComponentResource):
    """This stack's GitHub environment, its secrets and variables, and the repository files when this stack owns them."""

    provider: github.Provider
    environment: github.RepositoryEnvironment
    files: dict[str, github.RepositoryFile]
    ruleset: github.RepositoryRuleset | None

    def __init__(self, name: str, args: GitHubPipelineArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:GitHubPipeline", name, None, opts)
        cfg = args.config
        gh = cfg.github
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
        self.environment = github.RepositoryEnvironment(
            f"{name}-environment",
            repository=repository,
            environment=gh.environment,
            wait_timer=gh.wait_timer_minutes,
            reviewers=reviewers,
            # Deployments only from the branches listed by the policy below.
            deployment_branch_policy=github.RepositoryEnvironmentDeploymentBranchPolicyArgs(
                protected_branches=False, custom_branch_policies=True
            ),
            opts=child,
        )
        environment = self.environment.environment
        github.RepositoryEnvironmentDeploymentPolicy(
            f"{name}-branch-policy", repository=repository, environment=environment, branch_pattern=gh.branch, opts=child
        )
        for key, value in environment_variables(cfg).items():
            github.ActionsEnvironmentVariable(
                f"{name}-env-var-{_resource_suffix(key)}",
                repository=repository,
                environment=environment,
                variable_name=key,
                value=value,
                opts=child,
            )
        for key, secret in environment_secrets(cfg).items():
            github.ActionsEnvironmentSecret(
                f"{name}-env-secret-{_resource_suffix(key)}",
                repository=repository,
                environment=environment,
                secret_name=key,
                value=pulumi.Output.secret(secret.reveal()),
                opts=child,
            )

        self.files = {}
        self.ruleset = None
        checks: list[str] = []
        if gh.manage_repository_files:
            checks = self._repository_level(name, cfg, repository, child)
        self.register_outputs(
            {
                "environment": environment,
                "files": sorted(self.files),
                "requiredChecks": checks,
            }
        )

    def _repository_level(self, name: str, cfg: StackConfig, repository: str, child: pulumi.ResourceOptions) -> list[str]:
        """What the owning stack manages for the whole repository; returns the required checks."""
        gh = cfg.github
        settings = workflow_settings(cfg)
        for key, secret in repository_secrets(cfg, settings).items():
            github.ActionsSecret(
                f"{name}-repo-secret-{_resource_suffix(key)}",
                repository=repository,
                secret_name=key,
                value=pulumi.Output.secret(secret.reveal()),
                opts=child,
            )
        for key, value in repository_variables(cfg).items():
            github.ActionsVariable(
                f"{name}-repo-var-{_resource_suffix(key)}", repository=repository, variable_name=key, value=value, opts=child
            )
        workflows = render_workflows(settings)
        for path, content in repository_files(cfg).items():
            self.files[path] = github.RepositoryFile(
                f"{name}-file-{_resource_suffix(path.rsplit('/', 1)[-1])}",
                repository=repository,
                file=path,
                content=content,
                branch=gh.branch,
                commit_message=commit_message(cfg, path),
                overwrite_on_create=True,
                opts=child,
            )
        checks = required_checks(workflows)
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
            # Repository admins bypass the rules: the owning stack's token commits the workflow files directly.
            bypass_actors=[
                github.RepositoryRulesetBypassActorArgs(actor_type="RepositoryRole", actor_id=ADMIN_ROLE_ID, bypass_mode="always")
            ],
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
