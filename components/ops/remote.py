"""Reaching a stack: its config and outputs through the pulumi CLI, its server over the stack's own connection."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.config.load import parse_config
from components.config.model import NAMESPACE, StackConfig
from components.host.ssh import docker_ssh_options


class OpsError(RuntimeError):
    """A command that cannot be carried out, said in one line."""


def config_from_pulumi_json(text: str, stack: str, namespace: str = NAMESPACE) -> StackConfig:
    """`pulumi config --json --show-secrets` output: {"<project>:key": {"value": "...", "secret": bool}, ...}
    (pulumi/pulumi pkg/cmd/pulumi/config/config.go configValueJSON) read into the program's model; `namespace`
    is the project's name (components/config/load.py project_name), which the keys are named with in errors too."""
    entries: Mapping[str, Any] = json.loads(text)
    prefix = f"{namespace}:"
    raw = {k[len(prefix) :]: v.get("value") for k, v in entries.items() if k.startswith(prefix) and v.get("value") is not None}
    secrets = {k[len(prefix) :] for k, v in entries.items() if k.startswith(prefix) and v.get("secret")}
    # these commands build and release nothing: the release tag the program derives from the checkout plays no part
    return parse_config(raw, secrets, stack, git_sha="0" * 40, namespace=namespace)


def run_pulumi(args: Sequence[str], env: Mapping[str, str]) -> str:
    try:
        done = subprocess.run(["pulumi", *args], capture_output=True, text=True, env=dict(env), timeout=120, check=False)
    except FileNotFoundError:
        raise OpsError("the pulumi CLI is not installed (https://www.pulumi.com/docs/install/)") from None
    if done.returncode != 0:
        raise OpsError(f"pulumi {' '.join(args)}: {done.stderr.strip()[-500:]}")
    return done.stdout


def host_argv(cfg: StackConfig, script: str, *, tty: bool = False) -> list[str]:
    """The command that runs `script` on the stack's server, over the stack's own connection (with a terminal
    on the server when `tty`: OpenSSH's -t, for an interactive command; -T otherwise)."""
    if not cfg.host.is_ssh:
        return ["/bin/sh", "-c", script]
    user, address, port = cfg.host.ssh
    return ["ssh", *docker_ssh_options(cfg.host), "-t" if tty else "-T", "-l", user, "-p", str(port), "--", address.strip("[]"), script]


@dataclass
class Host:
    """The stack's server, for running scripts on it."""

    cfg: StackConfig
    env: Mapping[str, str]

    def run(self, script: str, *, stdin: str | None = None, timeout: float = 600) -> str:
        done = subprocess.run(
            host_argv(self.cfg, script), input=stdin or "", capture_output=True, text=True, env=dict(self.env), timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise OpsError(f"on {self.cfg.host.url}: exit {done.returncode}: {(done.stderr or done.stdout).strip()[-1500:]}")
        return done.stdout

    def stream(self, script: str, *, tty: bool = False) -> int:
        """Run `script` with this terminal's input and output (for logs that follow, a command in a container)."""
        return subprocess.run(host_argv(self.cfg, script, tty=tty), env=dict(self.env), check=False).returncode


# The scripts run on the server are shell: these keep its own variables unquoted in an argument list.
class ShellVar(str):
    """A word of an argument list that is one of the scripts' own shell variables, filled in on the server (a
    word of CMD= that reads "$name" is text like any other, and stays as written)."""

    __slots__ = ()


N, S, NAME, IMAGE = ShellVar("$n"), ShellVar("$s"), ShellVar("$name"), ShellVar("$image")


def sh_join(argv: Sequence[str]) -> str:
    """An argument list as one shell command line: every word quoted, but the scripts' own variables."""
    return " ".join(f'"{a}"' if isinstance(a, ShellVar) else shlex.quote(a) for a in argv)
