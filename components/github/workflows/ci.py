"""``ci.yml``: lint, type-check and test on pushes to the default branch and on pull requests."""

from __future__ import annotations

from typing import Any

from components.github.workflows.settings import WorkflowSettings
from components.github.workflows.steps import expr, test_job


def ci_workflow(s: WorkflowSettings) -> dict[str, Any]:
    return {
        "name": "ci",
        "on": {"push": {"branches": [s.default_branch]}, "pull_request": {}},
        "permissions": {},
        "concurrency": {"group": "ci-" + expr("github.ref"), "cancel-in-progress": True},
        "jobs": {"test": test_job(s)},
    }
