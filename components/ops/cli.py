"""`python -m components.ops`: the command line of the day-two commands, and what each runs."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from components.accessories.backups import list_backups_script, password_env, restore_script
from components.config.load import project_name
from components.config.model import StackConfig
from components.host.ssh import AgentError, load_deploy_key
from components.ops.backups import backups_report, restore_warning
from components.ops.containers import (
    LIFECYCLE,
    env_stdin,
    exec_script,
    lifecycle_script,
    one_off_create_script,
    one_off_env,
    one_off_start_script,
    role_of,
    serving_tag,
    single_host,
    stop_warning,
)
from components.ops.logs import LogOptions, logs_script
from components.ops.remote import Host, OpsError, config_from_pulumi_json, run_pulumi
from components.ops.status import status_report, status_script


def read_release(stack: str, environ: Mapping[str, str]) -> Any:
    """The stack's `release` output, or None when it has none."""
    try:
        return json.loads(run_pulumi(["stack", "output", "release", "--json", "--stack", stack], environ))
    except (OpsError, ValueError):
        return None


def command_line(text: str) -> list[str]:
    """CMD= as the words a POSIX shell would make of it (no shell runs it: `sh -c '...'` for pipes and the like)."""
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise OpsError(f"CMD={text!r}: expected a command line ({error})") from None
    if not words:
        raise OpsError("CMD= is missing: expected the command to run, like CMD='bin/rails console'")
    return words


def run_in_role(host: Host, cfg: StackConfig, role: str, tag: str, command: Sequence[str], *, new: bool, interactive: bool) -> int:
    """`make exec`: in a running container of the role's serving release, or (new) in a one-off container of its
    image with its environment, removed once it exits."""
    if not new:
        return host.stream(exec_script(cfg, role, tag, command, interactive=interactive), tty=interactive)
    pairs = one_off_env(cfg, role, tag)
    script = one_off_create_script(cfg, role, tag, [name for name, _ in pairs], command, interactive=interactive)
    container_id = host.run(script, stdin=env_stdin(pairs)).strip()
    try:
        return host.stream(one_off_start_script(container_id, interactive=interactive), tty=interactive)
    finally:
        # the start script removes it too: this covers a connection lost before that
        with contextlib.suppress(OpsError, OSError, subprocess.SubprocessError):
            host.run(f"docker rm --force {container_id} >/dev/null 2>&1 || true")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.ops", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=("status", "logs", "exec", *LIFECYCLE, "backups", "restore"))
    parser.add_argument("--stack", required=True)
    parser.add_argument("--role", default="web")
    parser.add_argument("--follow", action="store_true")
    parser.add_argument("--lines", default="100")
    parser.add_argument("--since", default="")
    parser.add_argument("--grep", default="")
    parser.add_argument("--cmd", default="")
    parser.add_argument("--new", action="store_true", help="exec: in a one-off container of the serving release's image")
    parser.add_argument("--confirm", action="store_true", help="stop: of web too, which stops serving")
    parser.add_argument("--backup")
    args = parser.parse_args(argv)
    environ = dict(os.environ if env is None else env)
    log_options = LogOptions(follow=args.follow, lines=args.lines, since=args.since, grep=args.grep)
    try:
        # what the command line asks is checked before anything is read or reached
        if args.command == "logs" and (problems := log_options.problems()):
            raise OpsError("; ".join(problems))
        command = command_line(args.cmd) if args.command == "exec" else []
        # the project the pulumi CLI finds from here, as it does for `pulumi config` itself
        namespace = project_name(os.getcwd())
        config_json = run_pulumi(["config", "--json", "--show-secrets", "--stack", args.stack], environ)
        cfg = config_from_pulumi_json(config_json, args.stack, namespace)
        load_deploy_key(cfg.host, environ)
        host = Host(cfg, environ)
        if args.command == "status":
            print(status_report(host.run(status_script(cfg)), read_release(args.stack, environ)))
        elif args.command == "logs":
            return host.stream(logs_script(cfg, args.role, options=log_options))
        elif args.command in ("exec", *LIFECYCLE):
            single_host(cfg, args.command)
            role_of(cfg, args.role)
            if args.command == "stop" and args.role == "web" and not args.confirm:
                raise OpsError(stop_warning(args.role, args.stack))
            tag = serving_tag(read_release(args.stack, environ), args.stack)
            if args.command == "exec":
                # a terminal of its own in the container only when this one is a terminal (Kamal's exec --interactive)
                return run_in_role(host, cfg, args.role, tag, command, new=args.new, interactive=sys.stdin.isatty())
            return host.stream(lifecycle_script(cfg, args.role, tag, args.command))
        elif not cfg.postgres.enabled:
            raise OpsError(f"stack {args.stack} has no PostgreSQL accessory (postgres.enabled), so no dumps")
        elif args.command == "backups":
            print(backups_report(host.run(list_backups_script(cfg.identity, cfg.postgres))))
        else:
            if not args.backup:
                raise OpsError("BACKUP=<name> is missing: `make backups` lists the names")
            script = restore_script(cfg.identity, cfg.postgres, f"{cfg.resource_prefix}-private", args.backup)
            if input(restore_warning(cfg, args.backup)).strip() != cfg.postgres.database:
                print("not restored")
                return 1
            print(host.run(script, stdin=password_env(cfg.postgres).reveal(), timeout=3600))
    except (OpsError, AgentError, ValueError) as error:
        print(f"cutover: {error}", file=sys.stderr)
        return 1
    return 0
