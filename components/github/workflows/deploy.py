"""``deploy.yml``: on pushes to the default branch, the tests, then ``pulumi up`` stack after stack; a failed
up redeploys the release that served before."""

from __future__ import annotations

import shlex
from typing import Any

from components.github.workflows.settings import WorkflowSettings
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
    test_job,
    went_live_step,
)


def deploy_workflow(s: WorkflowSettings) -> dict[str, Any]:
    jobs: dict[str, Any] = {"test": test_job(s)}
    previous = "test"
    for stack in s.stacks:
        q = shlex.quote(stack)
        steps = [
            *pulumi_setup(s),
            {
                "name": "Select the stack (created on its first deploy)",
                "id": "select",
                "env": pulumi_env(s),
                "run": f"pulumi stack select --create {q}",
            },
            load_deploy_key(s, stack),
            capture_release_step(s, stack),
            notify_started(s, "deploy", stack),
            {
                "name": "pulumi up",
                "id": "up",
                "env": pulumi_env(s),
                # --run-program: each resource is refreshed as the program declares it, with the provider the
                # program configures (pulumi/pulumi pkg/resource/deploy/step_generator.go:852-893), not the one
                # the state recorded; the deploy key is in the job's agent already (the deploy-key step).
                "run": f"pulumi up --yes --refresh --run-program {policy(s)} --stack {q}",
            },
            went_live_step(s, stack),
            {
                # The job stays failed: this step only puts the last good release back.
                "name": "Roll back to the release serving before this deploy",
                "id": "rollback",
                "if": "failure() && steps.up.outcome == 'failure' && steps.before.outputs.digest != '' && steps.after.outputs.live != 'true'",
                "env": pulumi_env(s, **{s.rollback_variable: expr("steps.before.outputs.digest")}),
                "run": script(
                    f'echo "::error title=Deploy failed::pulumi up failed on stack {stack}; redeploying ${s.rollback_variable}"',
                    f"pulumi up --yes {policy(s)} --stack {q}",
                ),
            },
            summary_step(s, stack, "Deploy", {"deploy": "up", "automatic rollback": "rollback"}),
            notify_finished(
                s,
                "deploy",
                stack,
                {
                    "UP": "steps.up.outcome",
                    "LIVE": "steps.after.outputs.live",
                    "ROLLBACK": "steps.rollback.outcome",
                    "TARGET": "steps.before.outputs.digest",
                    "RELEASE_URL": "steps.summary.outputs.url",
                },
            ),
        ]
        this_job = job_id("deploy", stack)
        jobs[this_job] = stack_job(s, stack, f"deploy {stack}", {"needs": [previous]}, steps)
        previous = this_job
    return {
        "name": "deploy",
        "on": {"push": {"branches": [s.default_branch]}, "workflow_dispatch": {}},
        "permissions": {},
        "jobs": jobs,
    }
