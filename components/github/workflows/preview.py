"""``preview.yml``: ``pulumi preview --diff`` of every stack on pull requests, behind its preview environment's
reviewers, posted as a pull request comment."""

from __future__ import annotations

from typing import Any

from components.github.workflows.settings import ACTIONS, WorkflowSettings
from components.github.workflows.steps import defaults, expr, job_id, load_deploy_key, pulumi_env, pulumi_permissions, pulumi_setup


def preview_workflow(s: WorkflowSettings) -> dict[str, Any]:
    """One job per stack, each in the stack's preview environment.

    The job checks out the pull request and runs its code (`pulumi install`'s lock, `__main__.py`), so it
    runs only once one of that environment's required reviewers approved the run: a job that references
    an environment with required reviewers waits, and can read the environment's secrets only after the
    approval (GitHub docs, content/actions/managing-workflow-runs/reviewing-deployments.md). No secret it
    reads exists outside that environment.
    """
    jobs: dict[str, Any] = {}
    for stack in s.stacks:
        preview = {
            "name": "pulumi preview --diff",
            "uses": ACTIONS["pulumi"].uses,
            "env": {k: v for k, v in pulumi_env(s).items() if k != "PULUMI_BACKEND_URL"},
            "with": {
                "command": "preview",
                "stack-name": stack,
                "work-dir": s.working_directory,
                **({} if s.pulumi_cloud_organization else {"cloud-url": expr(f"secrets.{s.backend_url_secret}")}),
                "pulumi-version": s.pulumi_version,
                "diff": True,
                "policyPacks": s.policy_pack,  # the action's --policy-pack (pulumi/actions src/config.ts)
                # A preview that fails fails this step, and so the check.
                "comment-on-pr": True,
                "github-token": expr("github.token"),
            },
        }
        jobs[job_id("preview", stack)] = {
            "name": f"preview {stack}",
            # Pull requests from forks get no secrets: their previews are skipped, not run half-blind.
            "if": "github.event.pull_request.head.repo.full_name == github.repository",
            "runs-on": s.runs_on,
            "timeout-minutes": s.test_timeout_minutes,
            # the preview posts its diff as a PR comment
            "permissions": pulumi_permissions(s, **{"pull-requests": "write"}),
            "environment": {"name": s.preview_environment(stack)},
            "defaults": defaults(s),
            "steps": [*pulumi_setup(s), load_deploy_key(s, stack), preview],
        }
    return {
        "name": "preview",
        "on": {"pull_request": {"branches": [s.default_branch]}},
        "permissions": {},
        "concurrency": {"group": "preview-" + expr("github.event.pull_request.number"), "cancel-in-progress": True},
        "jobs": jobs,
    }
