"""``drift.yml``: every day, ``pulumi preview --refresh --expect-no-changes`` of every stack at the commit it
last deployed."""

from __future__ import annotations

import shlex
from typing import Any

from components.github.workflows.settings import WorkflowSettings
from components.github.workflows.steps import (
    checkout,
    cloud_login,
    defaults,
    expr,
    install_dependencies,
    install_pulumi,
    job_id,
    load_deploy_key,
    policy,
    pulumi_env,
    pulumi_permissions,
    script,
    setup_python,
    ssh_agent,
)


def drift_workflow(s: WorkflowSettings) -> dict[str, Any]:
    """Each stack: does its server still match what its last deploy declared?

    `pulumi preview --refresh --run-program` reads each resource back from the server as the program
    declares it (the deploy key is in the job's agent: the deploy-key step); `--expect-no-changes` fails the preview when
    any create, update, replace or delete is proposed. Refreshes themselves are not counted: a refresh
    step is not logical (pulumi/pulumi pkg/resource/deploy/step.go RefreshStep.Logical, counted only
    when logical in pkg/engine/update.go:1348-1370; the check is pkg/cmd/pulumi/operations/preview.go:635).
    The program runs at the commit the stack's `release` records, so a commit not deployed yet is
    not reported as drift.
    """
    jobs: dict[str, Any] = {}
    for stack in s.stacks:
        jobs[job_id("drift", stack)] = _drift_job(s, stack)
    return {
        "name": "drift",
        "on": {"schedule": [{"cron": s.drift_schedule}], "workflow_dispatch": {}},
        "permissions": {},
        "jobs": jobs,
    }


def _drift_job(s: WorkflowSettings, stack: str) -> dict[str, Any]:
    q = shlex.quote(stack)
    deployed = {
        "name": "Check out the commit the stack last deployed",
        "id": "deployed",
        "env": pulumi_env(s),
        "run": script(
            f"sha=\"$(pulumi stack output {s.release_output} --json --stack {q} 2>/dev/null | jq -r '.gitSha // empty' || true)\"",
            'if [[ "$sha" =~ ^[0-9a-f]{40}$ ]] && git checkout --quiet --detach "$sha"; then',
            f'  echo "Checking stack {stack} against $sha, the commit it last deployed."',
            "else",
            '  sha="$(git rev-parse HEAD)"',
            f'  echo "::warning title=No deployed commit::stack {stack} records no deployed commit found here; checking against $sha"',
            "fi",
            'echo "sha=$sha" >> "$GITHUB_OUTPUT"',
        ),
    }
    check = {
        "name": "pulumi preview --refresh --expect-no-changes",
        "env": pulumi_env(s, DEPLOYED=expr("steps.deployed.outputs.sha")),
        "run": script(
            'report="$RUNNER_TEMP/drift.txt"',
            # the deployed commit may predate the policy pack: then it runs without it
            f"policy=(); if [ -f {shlex.quote(s.policy_pack)}/PulumiPolicy.yaml ]; then policy=({policy(s)}); fi",
            f'pulumi preview --refresh --run-program --expect-no-changes --diff --color never "${{policy[@]}}" --stack {q} > "$report" 2>&1 && code=0 || code=$?',
            'cat "$report"',
            "{",
            f'  echo "### Drift: stack {stack}"',
            '  if [ "$code" -eq 0 ]; then',
            '    echo "The server matches what $DEPLOYED declares."',
            "  else",
            '    echo "The server does not match what $DEPLOYED declares (pulumi preview exit $code); the preview:"',
            "    echo '```'",
            '    tail -c 60000 "$report"',
            "    echo '```'",
            "  fi",
            '} >> "$GITHUB_STEP_SUMMARY"',
            'exit "$code"',
        ),
    }
    # The whole history: the deployed commit may be older than the branch's head.
    full_checkout = {**checkout(), "with": {"persist-credentials": False, "fetch-depth": 0}}
    setup = [full_checkout, setup_python(s), install_pulumi(s), *cloud_login(s), deployed, install_dependencies(s), ssh_agent()]
    return {
        "name": f"drift {stack}",
        "runs-on": s.runs_on,
        "timeout-minutes": s.test_timeout_minutes,
        "permissions": pulumi_permissions(s),
        # its own environment, limited to the default branch: the stack's credentials, no reviewer to wait for
        "environment": {"name": s.drift_environment(stack)},
        # never at the same time as a deploy or rollback of the stack (they share its concurrency group)
        "concurrency": {"group": f"deploy-{stack}", "cancel-in-progress": False},
        "defaults": defaults(s),
        "steps": [*setup, load_deploy_key(s, stack), check],
    }
