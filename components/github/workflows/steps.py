"""The steps and jobs the workflows share: checkout, Python, the pulumi CLI, the ssh agent, the release's
capture and summary, the notifications (components/github/notifications.py)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from components.github.notifications import DEPLOY_OUTCOMES, ROLLBACK_OUTCOMES, finished_script, started_script
from components.github.workflows.settings import ACTIONS, RELEASE_FIELDS, WorkflowSettings
from components.host.ssh import KEY_LIFETIME_S


def expr(expression: str) -> str:
    return "${{ " + expression + " }}"


def job_id(prefix: str, stack: str) -> str:
    return f"{prefix}-{stack.replace('.', '-')}"


def checkout() -> dict[str, Any]:
    return {
        "name": "Check out the repository",
        "uses": ACTIONS["checkout"].uses,
        "with": {"persist-credentials": False},
    }


def setup_python(s: WorkflowSettings) -> dict[str, Any]:
    return {
        "name": "Set up Python",
        "uses": ACTIONS["setup-python"].uses,
        "with": {"python-version": s.python_version},
    }


def install_pulumi(s: WorkflowSettings) -> dict[str, Any]:
    # Without `command`, the action only installs the CLI.
    return {
        "name": "Install the Pulumi CLI",
        "uses": ACTIONS["pulumi"].uses,
        "with": {"pulumi-version": s.pulumi_version},
    }


def install_dependencies(s: WorkflowSettings) -> dict[str, Any]:
    return {"name": "Install the program's dependencies", "run": s.install_command}


def pulumi_env(s: WorkflowSettings, **extra: str) -> dict[str, str]:
    """Env of a step that runs pulumi against the state backend: the secrets go to these steps only."""
    # Secrets resolve to the job's environment's secrets (a job outside an environment reads none of these).
    env = {} if s.pulumi_cloud_organization else {"PULUMI_BACKEND_URL": expr(f"secrets.{s.backend_url_secret}")}
    env["PULUMI_CONFIG_PASSPHRASE"] = expr(f"secrets.{s.passphrase_secret}")
    for name in s.extra_secrets:
        env[name] = expr(f"secrets.{name}")
    env.update(extra)
    return env


def policy(s: WorkflowSettings) -> str:
    """The flag every `pulumi preview` and `pulumi up` of the workflows gets: a mandatory rule broken fails it
    (in `up` before that resource changes: pulumi/pulumi pkg/resource/deploy/step_generator.go analyzeAll)."""
    return f"--policy-pack {shlex.quote(s.policy_pack)}"


def defaults(s: WorkflowSettings) -> dict[str, Any]:
    return {"run": {"shell": "bash", "working-directory": s.working_directory}}


def ssh_agent() -> dict[str, Any]:
    """An ssh agent for the job's pulumi steps: the next step loads the deploy key into it (memory only),
    and the docker provider's ssh logs in with it (components/host/ssh.py)."""
    return {
        "name": "Start an ssh agent for the deploy key",
        "run": script(
            'ssh-agent -a "$RUNNER_TEMP/ssh-agent.sock" > /dev/null',
            'echo "SSH_AUTH_SOCK=$RUNNER_TEMP/ssh-agent.sock" >> "$GITHUB_ENV"',
        ),
    }


def load_deploy_key(s: WorkflowSettings, stack: str) -> dict[str, Any]:
    """The stack's deploy key into the job's agent, before any pulumi command reads the server: the docker provider
    is a process the engine starts, so the program cannot hand it the key, and only checks that the agent holds it
    (components/host/ssh.py check_deploy_key). The key goes from the CLI to ssh-add on a pipe: never into a file, a
    process argument or the log. A stack on the local engine has none to load. This runs no code of the checkout,
    so it serves a job that checks out an older commit too (drift)."""
    q = shlex.quote(stack)
    return {
        "name": "Load the deploy key into the ssh agent",
        "id": "deploy-key",
        "env": pulumi_env(s),
        "run": script(
            f'host="$(pulumi config get --path host.url --stack {q} 2>/dev/null || true)"',
            'case "$host" in',
            f"  ssh://*) pulumi config get sshPrivateKey --stack {q} | ssh-add -q -t {KEY_LIFETIME_S} - ;;",
            "esac",
        ),
    }


def cloud_login(s: WorkflowSettings) -> list[dict[str, Any]]:
    """With a Pulumi Cloud organization: an OIDC login whose short-lived token the later steps use."""
    if not s.pulumi_cloud_organization:
        return []
    # pulumi/auth-actions action.yml: exchanges the job's GitHub ID token for a Pulumi access token and, with
    # export-environment-variables (default true), exports PULUMI_ACCESS_TOKEN to the job's later steps.
    return [
        {
            "name": "Log in to Pulumi Cloud by OpenID Connect",
            "uses": ACTIONS["pulumi-auth"].uses,
            "with": {
                "organization": s.pulumi_cloud_organization,
                "requested-token-type": "urn:pulumi:token-type:access_token:organization",
            },
        }
    ]


def pulumi_setup(s: WorkflowSettings) -> list[dict[str, Any]]:
    return [checkout(), setup_python(s), install_pulumi(s), install_dependencies(s), *cloud_login(s), ssh_agent()]


def pulumi_permissions(s: WorkflowSettings, **extra: str) -> dict[str, str]:
    """A job that runs pulumi: read the repository; with OIDC, ask GitHub for the job's ID token."""
    permissions = {"contents": "read", **extra}
    if s.pulumi_cloud_organization:
        permissions["id-token"] = "write"
    return permissions


def script(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def capture_release_step(s: WorkflowSettings, stack: str) -> dict[str, Any]:
    """The release serving before the change, as the step output `digest` (empty when there is none)."""
    q = shlex.quote(stack)
    saved = '"$RUNNER_TEMP/release-before.json"'
    return {
        "name": "Record the release serving now",
        "id": "before",
        "env": pulumi_env(s),
        "run": script(
            "# The first deploy of a stack has no release yet: that is not an error.",
            'digest=""',
            f"if pulumi stack output {s.release_output} --json --stack {q} > {saved}; then",
            f'  digest="$(jq -r \'if type == "object" then (.imageRef // "" | tostring) else "" end | sub("^[^@]*@"; "")\' {saved})"',
            "fi",
            'if [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then',
            '  echo "Release serving now: $digest"',
            "else",
            '  digest=""',
            f'  echo "No release recorded yet on stack {stack}."',
            "fi",
            'echo "digest=$digest" >> "$GITHUB_OUTPUT"',
        ),
    }


def went_live_step(s: WorkflowSettings, stack: str) -> dict[str, Any]:
    """After a failed `pulumi up`: did the new release go live and get recorded before the failure?

    The engine keeps the stack outputs the program registered even when a later step fails
    (pulumi/pulumi pkg/resource/deploy/step_executor.go:223-231, 263-268), and the program
    registers `release` only once the new release passed its switch and verification. So a
    changed `release` means it serves and passed everything; what failed came after (deleting
    an old container, the GitHub side), and rolling it back would take a good release down.
    Output `live`: true in that case.
    """
    q = shlex.quote(stack)
    saved = '"$RUNNER_TEMP/release-before.json"'
    return {
        "name": "Check whether the new release went live before the failure",
        "id": "after",
        "if": "failure() && steps.up.outcome == 'failure'",
        "env": pulumi_env(s),
        "run": script(
            f'now="$(pulumi stack output {s.release_output} --json --stack {q} 2>/dev/null || echo null)"',
            f'before="$(cat {saved} 2>/dev/null || echo null)"',
            'if [ "$(jq -S . <<< "$now")" != "$(jq -S . <<< "$before")" ]; then',
            f'  echo "::warning title=Released::stack {stack} records the new release, which passed its switch and verification; what failed came after it, so it is not rolled back"',
            '  echo "live=true" >> "$GITHUB_OUTPUT"',
            "else",
            '  echo "live=false" >> "$GITHUB_OUTPUT"',
            "fi",
        ),
    }


def summary_step(s: WorkflowSettings, stack: str, title: str, outcomes: Mapping[str, str]) -> dict[str, Any]:
    """Writes the outcome, the release now serving, its URL and the time to the job summary; outputs `url`."""
    q = shlex.quote(stack)
    names = {label: "OUTCOME_" + re.sub(r"[^A-Z0-9]", "_", label.upper()) for label in outcomes}
    env = pulumi_env(
        s,
        RELEASE_BEFORE=expr("steps.before.outputs.digest"),
        **{names[label]: expr(f"steps.{step}.outcome") for label, step in outcomes.items()},
    )
    fields = ", ".join(f'"{key}"' for key in RELEASE_FIELDS)
    lines = [
        f"release=\"$(pulumi stack output {s.release_output} --json --stack {q} 2>/dev/null || echo '{{}}')\"",
        f'url="$(pulumi stack output {s.url_output} --stack {q} 2>/dev/null || true)"',
        'if [[ ! "$url" =~ ^https?://[^[:space:]]+$ ]]; then url=""; fi',
        "{",
        f'  echo "### {title}: stack {stack}, environment {s.environment(stack)}"',
        '  echo ""',
        '  echo "| | |"',
        '  echo "|---|---|"',
        *(f'  echo "| {label} | ${{{names[label]}:-skipped}} |"' for label in outcomes),
        '  echo "| serving before | ${RELEASE_BEFORE:--} |"',
        f'  jq -r \'if type == "object" then ({fields}) as $k | "| release \\($k) | \\(.[$k] // "-") |" else empty end\' <<< "$release"',
        '  echo "| url | ${url:--} |"',
        '  echo "| finished at | $(date -u +%Y-%m-%dT%H:%M:%SZ) |"',
        '} >> "$GITHUB_STEP_SUMMARY"',
        'echo "url=$url" >> "$GITHUB_OUTPUT"',
    ]
    return {"name": "Write the job summary", "id": "summary", "if": "always()", "env": env, "run": script(*lines)}


def notify_started(s: WorkflowSettings, kind: str, stack: str) -> dict[str, Any]:
    # A notification never fails a deploy: the script always ends well, and the step may fail anyway.
    return {
        "name": f"Notify: {kind} started",
        "continue-on-error": True,
        "env": {"NOTIFY_WEBHOOK": expr(f"secrets.{s.notify_secret}")},
        "run": started_script(kind, stack),
    }


def notify_finished(s: WorkflowSettings, kind: str, stack: str, outcomes: Mapping[str, str]) -> dict[str, Any]:
    """The outcome, whatever happened; `outcomes`: variable -> expression, read by the outcome table."""
    table = DEPLOY_OUTCOMES if kind == "deploy" else ROLLBACK_OUTCOMES
    key = "/".join(f"${{{name}:-}}" for name in outcomes if name not in ("TARGET", "RELEASE_URL"))
    return {
        "name": f"Notify: {kind} finished",
        "if": "always()",
        "continue-on-error": True,
        "env": {"NOTIFY_WEBHOOK": expr(f"secrets.{s.notify_secret}"), **{k: expr(v) for k, v in outcomes.items()}},
        "run": finished_script(kind, stack, table, key + ("" if kind == "deploy" else "/-")),
    }


def stack_job(s: WorkflowSettings, stack: str, name: str, condition: Mapping[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        **condition,
        "runs-on": s.runs_on,
        "timeout-minutes": s.deploy_timeout_minutes,
        "permissions": pulumi_permissions(s),
        "environment": {"name": s.environment(stack), "url": expr("steps.summary.outputs.url")},
        # Deploys and rollbacks of one stack queue up; none is ever cancelled half-way.
        "concurrency": {"group": f"deploy-{stack}", "cancel-in-progress": False},
        "defaults": defaults(s),
        "steps": steps,
    }


def test_job(s: WorkflowSettings) -> dict[str, Any]:
    # The Pulumi CLI lets the schema-conformance tests read the providers' schemas
    # (`pulumi package get-schema`) where the pinned copies beside the project are absent.
    steps: list[dict[str, Any]] = [checkout(), setup_python(s), install_pulumi(s)]
    steps += [{"name": f"Run {command}", "run": command} for command in s.test_setup_commands]
    steps.append({"name": "Lint, type-check and test", "run": s.test_command})
    return {
        "name": "lint, type-check and test",
        "runs-on": s.runs_on,
        "timeout-minutes": s.test_timeout_minutes,
        "permissions": {"contents": "read"},
        "defaults": {"run": {"shell": "bash"}},
        "steps": steps,
    }
