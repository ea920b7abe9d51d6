"""Dependency updates: the repository's `.github/dependabot.yml`, rendered from data. Pure.

Weekly pull requests for what the project pins:

- the actions the workflows use (`github-actions`, directory `/`: `.github/workflows`);
- the program's Python requirements (`pip`, `/`: requirements.txt, requirements-dev.txt);
- the example app's requirements and its base image (`pip` and `docker`, the app's directory).

Each ecosystem's updates come as one grouped pull request, so a week's bumps are reviewed,
previewed and deployed together. The workflows are generated (components/github/workflows.py): an
update of an action changes the pins of the generated files, and the check that keeps them
equal to the rendering fails on that pull request until `ACTIONS` in components/github/workflows.py
names the same commit; its message gives the line to write (README "Dependency updates").

The GitHub component commits the file beside the workflows; `make workflows` writes both
(`python -m components.github.dependabot --write .github/dependabot.yml`).
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml

from components.github.workflows.render import HEADER
from components.github.workflows.settings import WorkflowSettings

DEPENDABOT_PATH: Final = ".github/dependabot.yml"
_DIRECTORY = re.compile(r"^/([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?$")


def _update(ecosystem: str, directory: str, interval: str, label: str) -> dict[str, Any]:
    return {
        "package-ecosystem": ecosystem,
        "directory": directory,
        "schedule": {"interval": interval},
        "groups": {label: {"patterns": ["*"]}},
        "commit-message": {"prefix": "deps"},
    }


def dependabot_config(settings: WorkflowSettings, app_directory: str | None = "/app", interval: str = "weekly") -> dict[str, Any]:
    """The Dependabot configuration: the actions, the program's requirements, then the app's (when it is in this repository)."""
    root = "/" if settings.working_directory == "." else f"/{settings.working_directory}"
    for key, value in (("working_directory", root), ("app_directory", app_directory or "/")):
        if not _DIRECTORY.match(value):
            raise ValueError(f"{key}: got {value!r}, expected a directory of the repository like '/app'")
    updates = [
        _update("github-actions", "/", interval, "actions"),
        _update("pip", root, interval, "program"),
    ]
    if app_directory:
        updates += [_update("pip", app_directory, interval, "app"), _update("docker", app_directory, interval, "app-image")]
    return {"version": 2, "updates": updates}


def render_dependabot(settings: WorkflowSettings, app_directory: str | None = "/app") -> str:
    data = dependabot_config(settings, app_directory)
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    text = f"{HEADER.replace('workflows.py', 'dependabot.py')}\n{body}"
    if yaml.safe_load(text) != data:
        raise AssertionError("rendered dependabot.yml does not load back to its data")
    return text


def main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m components.github.dependabot", description="Write .github/dependabot.yml.")
    parser.add_argument("--write", metavar="FILE", type=Path, help=f"write the file (e.g. {DEPENDABOT_PATH}); print it otherwise")
    args = parser.parse_args(argv)
    text = render_dependabot(WorkflowSettings())
    if args.write is None:
        print(text, end="")
    else:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text, encoding="utf-8")
        print(args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
