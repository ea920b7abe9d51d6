"""Runs a Pulumi program on the real engine: the real `pulumi` CLI, a file backend, a passphrase.

The CLI is the one `make tools` builds into .tools/bin from Pulumi's Go modules, or the `pulumi` on
PATH. The program runs as an inline program of the Python SDK's Automation API: the SDK serves the
engine's LanguageRuntime itself (pulumi sdk/python/lib/pulumi/automation/_server.py LanguageServer)
and hands its address to the CLI with `--client` (automation/_stack.py Stack.up), so no
`pulumi-language-python` is needed. Everything else, the engine, its plan, its state and secrets
manager, is the CLI's own.

    with RealStack(tmp_path, program) as stack:
        stack.config("cutover:secretEnv.API_TOKEN", "value", secret=True)
        outputs = stack.up(CUTOVER_GIT_SHA="a" * 40)
        stack.state()        # the checkpoint, as `pulumi stack export` prints it
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from tests.harness import ROOT

# nothing tried on the network: no update check, no plugin download
OFFLINE = {"PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"}
BUILT = ROOT / ".tools"


def cli_root() -> Path | None:
    """The folder whose bin/pulumi is the CLI: .tools (make tools), or the pulumi on PATH."""
    if (BUILT / "bin" / "pulumi").exists():
        return BUILT
    found = shutil.which("pulumi")
    return Path(found).resolve().parent.parent if found else None


def _apply(values: Mapping[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """The inline program runs in this process: it reads os.environ, so the variables are set here."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        _apply(values)
        yield
    finally:
        _apply(saved)


class RealStack:
    """One stack of a copy of the project (Pulumi.yaml, Pulumi.<stack>.yaml) in `workdir`."""

    def __init__(self, workdir: Path, program: Callable[[], None], stack: str = "dev", passphrase: str = "e2e-passphrase") -> None:  # noqa: S107 (a test stack's own)
        root = cli_root()
        if root is None:
            raise FileNotFoundError("no pulumi CLI: run make tools, or put the official CLI on PATH")
        self.project_dir = workdir / "project"
        self.project_dir.mkdir(parents=True)
        for name in ("Pulumi.yaml", f"Pulumi.{stack}.yaml"):
            if (ROOT / name).exists():
                shutil.copy(ROOT / name, self.project_dir / name)
        self.state_dir = workdir / "state"
        self.state_dir.mkdir()
        self.env = {
            **OFFLINE,
            "PULUMI_BACKEND_URL": f"file://{self.state_dir}",
            "PULUMI_CONFIG_PASSPHRASE": passphrase,
            "PULUMI_HOME": str(workdir / "pulumi-home"),
        }
        self.stack_name = stack
        self.root = root
        with _environment(self.env):
            self.stack = auto.create_or_select_stack(
                stack_name=stack,
                project_name="cutover",
                program=program,
                opts=auto.LocalWorkspaceOptions(
                    work_dir=str(self.project_dir), pulumi_command=auto.PulumiCommand(root=str(root)), env_vars=self.env
                ),
            )

    def __enter__(self) -> RealStack:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def config(self, key: str, value: str, secret: bool = False) -> None:
        with _environment(self.env):
            self.stack.set_config(key, auto.ConfigValue(value, secret=secret), path=True)

    def up(self, **env: str | None) -> dict[str, Any]:
        """`pulumi up`; the stack's outputs (secrets revealed) when it succeeds, CommandError when not."""
        with _environment({**self.env, **env}):
            result = self.stack.up(on_output=lambda _line: None)
        return {k: v.value for k, v in result.outputs.items()}

    def steps(self, preview: bool = False, **env: str | None) -> list[tuple[str, str]]:
        """`pulumi up` (or `pulumi preview`): each resource's URN and the step the engine took for it
        (`same`, `create`, `delete`, ...), in the order the engine reported them."""
        seen: list[tuple[str, str]] = []

        def on_event(event: auto.EngineEvent) -> None:
            if event.resource_pre_event is not None:
                seen.append((event.resource_pre_event.metadata.urn, event.resource_pre_event.metadata.op.value))

        with _environment({**self.env, **env}):
            if preview:
                self.stack.preview(on_output=lambda _line: None, on_event=on_event)
            else:
                self.stack.up(on_output=lambda _line: None, on_event=on_event)
        return seen

    def preview(self, **env: str | None) -> None:
        """`pulumi preview`; CommandError when it fails."""
        with _environment({**self.env, **env}):
            self.stack.preview(on_output=lambda _line: None)

    def outputs(self) -> dict[str, Any]:
        with _environment(self.env):
            return {k: v.value for k, v in self.stack.outputs().items()}

    def secret_outputs(self) -> set[str]:
        with _environment(self.env):
            return {k for k, v in self.stack.outputs().items() if v.secret}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The CLI itself, in the project's folder, with the stack's environment."""
        return subprocess.run(
            [str(self.root / "bin" / "pulumi"), *args],
            cwd=self.project_dir,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )

    def state(self) -> str:
        """`pulumi stack export` (as the CLI prints it, secrets not shown) and the files the backend keeps."""
        exported = self.cli("stack", "export", "--stack", self.stack_name).stdout
        files = "".join(p.read_text(errors="replace") for p in self.state_dir.rglob("*") if p.is_file())
        return exported + files

    def stack_file(self) -> str:
        return (self.project_dir / f"Pulumi.{self.stack_name}.yaml").read_text()
