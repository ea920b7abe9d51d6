"""What the workflows are rendered from: `WorkflowSettings`, checked, and the actions they pin (`ACTIONS`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from components.github.notifications import NOTIFY_SECRET

SKIP_CI_MARKER: Final = "[skip ci]"

WORKFLOW_FILES: Final = ("ci.yml", "preview.yml", "deploy.yml", "rollback.yml", "drift.yml")

# The keys of the `release` stack output.
RELEASE_FIELDS: Final = ("imageRef", "tag", "gitSha", "deployedAt", "source")

# What a rollback target may be: "previous", a number N (the N-th release before
# the current one; 1 is the previous one), a git SHA, or a sha256 image digest.
# Bash ERE syntax.
ROLLBACK_TARGET_BASH_PATTERN: Final = "^(previous|[0-9]+|[0-9a-f]{7,40}|sha256:[0-9a-f]{64})$"


@dataclass(frozen=True)
class PinnedAction:
    """A third-party action at a full commit SHA; `version` is the release tag of that commit."""

    repository: str
    sha: str
    version: str

    @property
    def uses(self) -> str:
        return f"{self.repository}@{self.sha}"


# The commit each release tag points to, read from the actions' own git
# repositories (tag -> commit). Update SHA and version together.
ACTIONS: Final[Mapping[str, PinnedAction]] = MappingProxyType(
    {
        "checkout": PinnedAction("actions/checkout", "3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
        "setup-python": PinnedAction("actions/setup-python", "5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
        "pulumi": PinnedAction("pulumi/actions", "8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0"),
        # OpenID Connect login to Pulumi Cloud (only with `pulumi_cloud_organization`)
        "pulumi-auth": PinnedAction("pulumi/auth-actions", "141415910c3beb54e03b48e9057c204c97b956f2", "v2.1.0"),
    }
)

_STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_ENVIRONMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_SECRET_NAME = re.compile(r"^(?!GITHUB_)[A-Z_][A-Z0-9_]*$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_BRANCH = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}(?<!/)$")
_PYTHON_VERSION = re.compile(r"^3\.\d{1,2}(\.\d{1,3})?$")
_PULUMI_VERSION = re.compile(r"^(\^|~)?\d+(\.\d+){0,2}$")
_RUNNER = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CRON = re.compile(r"^[0-9*/,-]+( [0-9*/,-]+){4}$")
_PATH = re.compile(r"^(\.|[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)$")
_ORGANIZATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

# The environments beside a stack's deployment environment: `<environment>-preview` (pull requests'
# previews, behind required reviewers) and `<environment>-drift` (the daily check, the default branch only).
PREVIEW_SUFFIX: Final = "-preview"
DRIFT_SUFFIX: Final = "-drift"
# The hash-locked requirements of the program (`make lock` writes them from requirements.txt).
PROGRAM_LOCK: Final = "requirements.lock"


def _default_environments() -> Mapping[str, str]:
    return {"prod": "production"}


@dataclass(frozen=True)
class WorkflowSettings:
    """What the workflows depend on; the defaults are the documented example configuration."""

    python_version: str = "3.11"
    # Stacks in deploy order: each deploys only after the one before it succeeded. By default the one stack
    # on a server; `dev` runs on the local engine, which on a runner is the runner's own (README "Setting up GitHub").
    stacks: tuple[str, ...] = ("prod",)
    # Stack -> GitHub deployment environment (reviewers, wait timers, secrets).
    environments: Mapping[str, str] = field(default_factory=_default_environments)
    default_branch: str = "main"
    # Where Pulumi.yaml is, relative to the repository root.
    working_directory: str = "."
    runs_on: str = "ubuntu-24.04"
    # The Pulumi CLI release the pipeline installs (a version or a range), the
    # one of the pulumi SDK pinned in requirements.txt.
    pulumi_version: str = "3.272.0"
    # GitHub secrets holding the state backend URL and the passphrase of the
    # stacks' secrets; SSH key, known hosts and registry password are stack
    # config secrets, so no other secret reaches the workflows.
    backend_url_secret: str = "PULUMI_BACKEND_URL"  # noqa: S105 (the name of a secret, not one)
    passphrase_secret: str = "PULUMI_CONFIG_PASSPHRASE"  # noqa: S105 (the name of a secret, not one)
    # More secrets exposed to the pulumi steps under their own names, e.g. the
    # credentials of an object-storage state backend.
    extra_secrets: tuple[str, ...] = ()
    # The environment secret holding the webhook URL deploys are announced to (components/github/notifications.py).
    notify_secret: str = NOTIFY_SECRET
    # Steps run before the test command; `make lint unit` installs what it needs itself.
    test_setup_commands: tuple[str, ...] = ()
    test_command: str = "make lint unit"
    # Installs the program's dependencies into the virtualenv Pulumi.yaml names, every one pinned by its hash:
    # pip refuses any file whose hash the lock does not list (pypa/pip docs/html/topics/secure-installs.md,
    # hash-checking mode), and --no-deps installs nothing the lock does not name. A virtualenv made by hand
    # serves Pulumi's `virtualenv` option as one `pulumi install` made (pulumi/pulumi sdk/python/README.md);
    # `pulumi install` itself would resolve requirements.txt afresh, unhashed.
    install_command: str = (
        f"python -m venv .venv && .venv/bin/pip install --disable-pip-version-check --require-hashes --no-deps -r {PROGRAM_LOCK}"
    )
    # With a Pulumi Cloud organization, the pulumi steps log in by OpenID Connect (pulumi/auth-actions:
    # GitHub's ID token exchanged for a short-lived organization token), and no backend URL secret is read.
    pulumi_cloud_organization: str | None = None
    release_output: str = "release"
    url_output: str = "url"
    rollback_variable: str = "CUTOVER_ROLLBACK_TO"
    test_timeout_minutes: int = 30
    # When the drift check runs (cron, UTC): daily, off the hour.
    drift_schedule: str = "17 5 * * *"
    deploy_timeout_minutes: int = 60
    # The policy pack every preview and update runs (policy/, relative to working_directory): it runs in the
    # program's virtualenv (policy/PulumiPolicy.yaml), so `install_command` installs what it needs too.
    policy_pack: str = "policy"

    def __post_init__(self) -> None:
        object.__setattr__(self, "stacks", tuple(self.stacks))
        object.__setattr__(self, "extra_secrets", tuple(self.extra_secrets))
        object.__setattr__(self, "test_setup_commands", tuple(self.test_setup_commands))
        object.__setattr__(self, "environments", MappingProxyType(dict(self.environments)))
        errors = _validate(self)
        if errors:
            raise ValueError("invalid workflow settings:\n" + "\n".join(f"  - {e}" for e in errors))

    def environment(self, stack: str) -> str:
        return self.environments[stack]

    def preview_environment(self, stack: str) -> str:
        """Where a pull request's preview of `stack` runs: behind required reviewers."""
        return self.environments[stack] + PREVIEW_SUFFIX

    def drift_environment(self, stack: str) -> str:
        """Where the daily drift check of `stack` runs: the default branch only."""
        return self.environments[stack] + DRIFT_SUFFIX


def _bad(key: str, value: object, expected: str) -> str:
    return f"{key}: got {value!r}, expected {expected}"


def _validate(s: WorkflowSettings) -> list[str]:
    errors: list[str] = []

    def check(key: str, value: object, pattern: re.Pattern[str], expected: str) -> None:
        if not isinstance(value, str) or not pattern.match(value):
            errors.append(_bad(key, value, expected))

    check("python_version", s.python_version, _PYTHON_VERSION, "a Python version like '3.11'")
    if not s.stacks:
        errors.append(_bad("stacks", s.stacks, "at least one stack name"))
    for stack in s.stacks:
        check("stacks", stack, _STACK_NAME, "stack names of letters, digits, '_', '.' and '-'")
    if len(set(s.stacks)) != len(s.stacks):
        errors.append(_bad("stacks", s.stacks, "each stack once"))
    missing = [stack for stack in s.stacks if stack not in s.environments]
    extra = [name for name in s.environments if name not in s.stacks]
    if missing or extra:
        errors.append(_bad("environments", dict(s.environments), f"one GitHub environment for each stack of {list(s.stacks)}"))
    for stack, env in s.environments.items():
        check(f"environments[{stack!r}]", env, _ENVIRONMENT_NAME, "an environment name of letters, digits, '_', '.' and '-'")
        if isinstance(env, str) and len(env) + max(len(PREVIEW_SUFFIX), len(DRIFT_SUFFIX)) > 255:
            errors.append(
                _bad(f"environments[{stack!r}]", env, f"at most {255 - len(PREVIEW_SUFFIX)} characters (with '{PREVIEW_SUFFIX}')")
            )
    if s.pulumi_cloud_organization is not None:
        check("pulumi_cloud_organization", s.pulumi_cloud_organization, _ORGANIZATION, "a Pulumi Cloud organization name")
    check("default_branch", s.default_branch, _BRANCH, "a branch name like 'main'")
    check("working_directory", s.working_directory, _PATH, "'.' or a relative directory like 'infra'")
    check("policy_pack", s.policy_pack, _PATH, "the policy pack's directory, relative, like 'policy'")
    check("runs_on", s.runs_on, _RUNNER, "a GitHub-hosted runner label like 'ubuntu-24.04'")
    check("pulumi_version", s.pulumi_version, _PULUMI_VERSION, "a Pulumi CLI version like '3.150.0' or a range like '^3'")
    for key, value in (("backend_url_secret", s.backend_url_secret), ("passphrase_secret", s.passphrase_secret)):
        check(key, value, _SECRET_NAME, "a secret name in upper case, not starting with GITHUB_")
    check("notify_secret", s.notify_secret, _SECRET_NAME, "a secret name in upper case, not starting with GITHUB_")
    for name in s.extra_secrets:
        check("extra_secrets", name, _SECRET_NAME, "secret names in upper case, not starting with GITHUB_")
    if not isinstance(s.drift_schedule, str) or not _CRON.match(s.drift_schedule):
        errors.append(_bad("drift_schedule", s.drift_schedule, "a cron schedule of five fields like '17 5 * * *'"))
    check("rollback_variable", s.rollback_variable, _ENV_NAME, "an environment variable name like 'CUTOVER_ROLLBACK_TO'")
    for key, value in (("release_output", s.release_output), ("url_output", s.url_output)):
        check(key, value, _OUTPUT_NAME, "a stack output name like 'release'")
    for key, value in (
        ("test_command", s.test_command),
        ("install_command", s.install_command),
        *(("test_setup_commands", c) for c in s.test_setup_commands),
    ):
        if not isinstance(value, str) or not value.strip() or "${{" in value:
            errors.append(_bad(key, value, "a non-empty shell command without '${{' expressions"))
    for key, minutes in (("test_timeout_minutes", s.test_timeout_minutes), ("deploy_timeout_minutes", s.deploy_timeout_minutes)):
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 360:
            errors.append(_bad(key, minutes, "a whole number of minutes from 1 to 360"))
    return errors
