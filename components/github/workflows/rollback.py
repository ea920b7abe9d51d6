"""``rollback.yml``: by hand, ``CUTOVER_ROLLBACK_TO=<target> pulumi up`` on one stack."""

from __future__ import annotations

import shlex
from typing import Any

from components.github.workflows.settings import ROLLBACK_TARGET_BASH_PATTERN, WorkflowSettings
from components.github.workflows.steps import (
    capture_release_step,
    expr,
    job_id,
    load_deploy_key,
    notify_finished,
    notify_started,
    policy,
    pulumi_env,
    pulumi_setup,
    script,
    stack_job,
    summary_step,
)


def rollback_workflow(s: WorkflowSettings) -> dict[str, Any]:
    jobs: dict[str, Any] = {}
    for stack in s.stacks:
        q = shlex.quote(stack)
        steps = [
            *pulumi_setup(s),
            load_deploy_key(s, stack),
            capture_release_step(s, stack),
            notify_started(s, "rollback", stack),
            {
                "name": "pulumi up with the earlier release",
                "id": "rollback",
                # The input reaches the script through the environment only, and is checked there.
                "env": pulumi_env(s, TARGET=expr("inputs.target")),
                "run": script(
                    "# Empty means the previous release, spelled out: an empty variable would deploy normally.",
                    'target="${TARGET:-previous}"',
                    f'if [[ ! "$target" =~ {ROLLBACK_TARGET_BASH_PATTERN} ]]; then',
                    '  echo "::error title=Bad target::expected empty, previous, a number N, a git SHA or sha256:<64 hex>"',
                    "  exit 1",
                    "fi",
                    f'echo "Rolling back stack {stack} to $target"',
                    f'{s.rollback_variable}="$target" pulumi up --yes {policy(s)} --stack {q}',
                ),
            },
            summary_step(s, stack, "Rollback", {"rollback": "rollback"}),
            notify_finished(
                s,
                "rollback",
                stack,
                {"UP": "steps.rollback.outcome", "TARGET": "inputs.target", "RELEASE_URL": "steps.summary.outputs.url"},
            ),
        ]
        condition = {"if": f"inputs.stack == '{stack}'"}
        jobs[job_id("rollback", stack)] = stack_job(s, stack, f"roll back {stack}", condition, steps)
    return {
        "name": "rollback",
        "on": {
            "workflow_dispatch": {
                "inputs": {
                    "stack": {
                        "description": "Stack to roll back",
                        "required": True,
                        "type": "choice",
                        "options": list(s.stacks),
                    },
                    "target": {
                        "description": "Release to redeploy: empty, previous or 1 for the previous one,"
                        " N for the N-th before, a git SHA or a sha256 digest",
                        "required": False,
                        "type": "string",
                        "default": "",
                    },
                }
            }
        },
        "permissions": {},
        "jobs": jobs,
    }
