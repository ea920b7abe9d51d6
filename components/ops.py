"""Day-to-day commands on a stack's server: status, logs, the database's dumps, a restore.

    python -m components.ops status  --stack prod      (make status STACK=prod)
    python -m components.ops logs    --stack prod [--role worker] [--follow]
    python -m components.ops backups --stack prod
    python -m components.ops restore --stack prod --backup <name>

The stack's config comes from `pulumi config --json --show-secrets` and is read with the model
the program uses (components/config.py); its release from `pulumi stack output`. The server is
reached the one way the docker provider reaches it: the system ssh with the same options
(components/ssh.py) and the deploy key in the ssh agent (put there as the program does); a
local (unix://) stack runs docker here. The scripts run on the server are pure functions of the
config; so are the reports made from what they print.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from components.backups import list_backups_script, password_env, restore_script
from components.caddyfile import LIVE_DIR
from components.config import NAMESPACE, StackConfig, parse_config, project_name
from components.ssh import AgentError, docker_ssh_options, load_deploy_key


class OpsError(RuntimeError):
    """A command that cannot be carried out, said in one line."""


# --------------------------------------------------------------------------- reaching the stack


def config_from_pulumi_json(text: str, stack: str, namespace: str = NAMESPACE) -> StackConfig:
    """`pulumi config --json --show-secrets` output: {"<project>:key": {"value": "...", "secret": bool}, ...}
    (pulumi/pulumi pkg/cmd/pulumi/config/config.go configValueJSON) read into the program's model; `namespace`
    is the project's name (components/config.py project_name), which the keys are named with in errors too."""
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


def host_argv(cfg: StackConfig, script: str) -> list[str]:
    """The command that runs `script` on the stack's server, over the stack's own connection."""
    if not cfg.host.is_ssh:
        return ["/bin/sh", "-c", script]
    user, address, port = cfg.host.ssh
    return ["ssh", *docker_ssh_options(cfg.host), "-T", "-l", user, "-p", str(port), "--", address.strip("[]"), script]


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

    def stream(self, script: str) -> int:
        """Run `script` with its output going straight to this terminal (for logs that follow)."""
        return subprocess.run(host_argv(self.cfg, script), env=dict(self.env), check=False).returncode


# --------------------------------------------------------------------------- status


# One JSON object per container, with only what the report shows: never its environment, which holds the
# accessories' passwords and `secretEnv` (an error message may quote what the script printed).
CONTAINER_FORMAT = (
    '{"Name": {{json .Name}}, "Config": {"Labels": {{json .Config.Labels}}}, "State": {{json .State}}, '
    '"RestartCount": {{json .RestartCount}}, "Image": {{json .Image}}}'
)


def status_script(cfg: StackConfig) -> str:
    labels = f"--filter label=cutover.app={shlex.quote(cfg.app_name)} --filter label=cutover.stack={shlex.quote(cfg.stack)}"
    slots = f'for f in $(ls {LIVE_DIR} | sort -n); do cat "{LIVE_DIR}/$f"; echo; done'
    return "\n".join(
        [
            "set -u",
            "echo '### containers'",
            f'ids="$(docker ps -aq {labels})"',
            f'if [ -n "$ids" ]; then docker inspect --format {shlex.quote(CONTAINER_FORMAT)} $ids; fi',
            "echo '### upstreams'",
            # the running proxy, by its labels: Pulumi names it (<prefix>-proxy-<7 hex>)
            f'proxy="$(docker ps -q {labels} --filter label=cutover.role=proxy | head -n 1)"',
            f'if [ -n "$proxy" ]; then docker exec "$proxy" sh -c {shlex.quote(slots)} 2>/dev/null || true; fi',
            *(cluster_status_lines(labels) if cfg.cluster.enabled else []),
            "echo '### disk'",
            "docker system df --format '{{json .}}'",
            "echo '### docker'",
            "docker version --format '{{.Server.Version}}'",
        ]
    )


def cluster_status_lines(labels: str) -> list[str]:
    """On a cluster: every node, and where each task of the stack's services runs (from the manager)."""
    return [
        "echo '### nodes'",
        "docker node ls --format '{{json .}}'",
        "echo '### tasks'",
        f'services="$(docker service ls -q {labels})"',
        "if [ -n \"$services\" ]; then docker service ps --filter desired-state=running --format '{{json .}}' $services; fi",
    ]


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _cluster_report(parts: Mapping[str, str]) -> list[str]:
    """The nodes and the tasks sections of a cluster's status, as tables; nothing for a single host."""
    if "nodes" not in parts:
        return []
    nodes = [json.loads(line) for line in parts["nodes"].splitlines() if line.strip()]
    rows: list[tuple[str, ...]] = [("NODE", "STATUS", "AVAILABILITY", "MANAGER")]
    rows += [(n.get("Hostname", "?"), n.get("Status", "?"), n.get("Availability", "?"), n.get("ManagerStatus", "") or "-") for n in nodes]
    tasks = [json.loads(line) for line in (parts.get("tasks") or "").splitlines() if line.strip()]
    task_rows: list[tuple[str, ...]] = [("TASK", "NODE", "STATE")]
    task_rows += [
        (t.get("Name", "?"), t.get("Node", "?"), t.get("CurrentState", "?")) for t in sorted(tasks, key=lambda t: t.get("Name", ""))
    ]
    return ["", *_table(rows), "", *_table(task_rows)]


def _sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            sections[current] = []
        elif current:
            sections[current].append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def _age(started: str, now: datetime) -> str:
    # Docker's StartedAt is UTC in Go's RFC 3339 with nanoseconds, trailing zeros cut: whole seconds are enough
    m = re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", started)
    try:
        at = datetime.fromisoformat(m.group(0) + "+00:00") if m else None
    except ValueError:
        at = None
    if at is None:
        return "?"
    seconds = int((now - at).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def status_report(text: str, release: Mapping[str, Any] | None, now: datetime | None = None) -> str:
    """What `status_script` printed, and the stack's `release` output, as a report a person reads."""
    now = now or datetime.now(UTC)
    parts = _sections(text)
    lines = []
    if release:
        digest = str(release.get("imageRef", "?")).rsplit("@", 1)[-1]
        lines.append(
            f"release: {release.get('tag', '?')} ({digest[:19]}…), deployed {release.get('deployedAt', '?')} ({release.get('source', '?')})"
        )
    else:
        lines.append("release: none recorded")
    containers = [json.loads(line) for line in (parts.get("containers") or "").splitlines() if line.strip()]
    rows: list[tuple[str, ...]] = [("ROLE", "CONTAINER", "STATE", "HEALTH", "UP", "RESTARTS", "IMAGE")]
    for c in sorted(containers, key=lambda c: (c["Config"]["Labels"].get("cutover.role", ""), c["Name"])):
        state = c.get("State") or {}
        health = (state.get("Health") or {}).get("Status", "-")
        up = _age(state.get("StartedAt", ""), now) if state.get("Running") else "-"
        rows.append(
            (
                c["Config"]["Labels"].get("cutover.role", "?"),
                c["Name"].lstrip("/"),
                state.get("Status", "?"),
                health,
                up,
                str(c.get("RestartCount", 0)),
                str(c.get("Image", "?"))[:19],
            )
        )
    lines.append("")
    lines += _table(rows)
    lines += _cluster_report(parts)
    upstreams = (parts.get("upstreams") or "").split()
    lines += ["", f"proxy routes to: {' '.join(upstreams) if upstreams else '(no proxy)'}", "", "disk:"]
    for line in (parts.get("disk") or "").splitlines():
        if line.strip():
            d = json.loads(line)
            lines.append(
                f"  {d.get('Type', '?')}: {d.get('TotalCount', '?')} ({d.get('Size', '?')}, {d.get('Reclaimable', '?')} reclaimable)"
            )
    lines.append(f"docker: {(parts.get('docker') or '?').strip()}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- logs


def logs_script(cfg: StackConfig, role: str, *, follow: bool, tail: int = 100) -> str:
    """The logs of the role's running containers, each line prefixed with its container's name (on a cluster,
    of the role's services, whose tasks run on any node: Swarm gathers them, each line prefixed with its task)."""
    labels = (
        f"--filter label=cutover.app={shlex.quote(cfg.app_name)} --filter label=cutover.stack={shlex.quote(cfg.stack)} "
        f"--filter label=cutover.role={shlex.quote(role)}"
    )
    options = f"--tail {tail}" + (" --follow" if follow else "")
    if cfg.cluster.enabled:
        return "\n".join(
            [
                "set -u",
                f'services="$(docker service ls -q {labels})"',
                f'if [ -z "$services" ]; then echo "no service of role {role}" >&2; exit 1; fi',
                f'for s in $services; do docker service logs --timestamps {options} "$s" & done',
                "wait",
            ]
        )
    return "\n".join(
        [
            "set -u",
            f'names="$(docker ps --format "{{{{.Names}}}}" {labels} --filter status=running)"',
            f'if [ -z "$names" ]; then echo "no running container of role {role}" >&2; exit 1; fi',
            "for n in $names; do (docker logs --timestamps " + options + ' "$n" 2>&1 | sed "s/^/$n | /") & done',
            "wait",
        ]
    )


# --------------------------------------------------------------------------- backups


def backups_report(text: str) -> str:
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows:
        return "no dump on the server yet (one is taken before each migration)"
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name.ljust(width)}  {int(size) / 1e6:8.1f} MB  {at}" for name, size, at in rows)


def restore_warning(cfg: StackConfig, backup: str) -> str:
    p = cfg.postgres
    return (
        f"This replaces every table of the database {p.database!r} on {cfg.host.url} (stack {cfg.stack}) with the\n"
        f"contents of {backup}. The app keeps running meanwhile: stop writes first if that matters.\n"
        f"What the database holds now is dumped first, as <time>-before-restore.dump beside it.\n"
        f"Type the database's name ({p.database}) to go on: "
    )


# --------------------------------------------------------------------------- the command line


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.ops", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=("status", "logs", "backups", "restore"))
    parser.add_argument("--stack", required=True)
    parser.add_argument("--role", default="web")
    parser.add_argument("--follow", action="store_true")
    parser.add_argument("--backup")
    args = parser.parse_args(argv)
    environ = dict(os.environ if env is None else env)
    try:
        # the project the pulumi CLI finds from here, as it does for `pulumi config` itself
        namespace = project_name(os.getcwd())
        config_json = run_pulumi(["config", "--json", "--show-secrets", "--stack", args.stack], environ)
        cfg = config_from_pulumi_json(config_json, args.stack, namespace)
        load_deploy_key(cfg.host, environ)
        host = Host(cfg, environ)
        if args.command == "status":
            try:
                release = json.loads(run_pulumi(["stack", "output", "release", "--json", "--stack", args.stack], environ))
            except OpsError:
                release = None
            print(status_report(host.run(status_script(cfg)), release))
        elif args.command == "logs":
            return host.stream(logs_script(cfg, args.role, follow=args.follow))
        elif not cfg.postgres.enabled:
            raise OpsError(f"stack {args.stack} has no PostgreSQL accessory (postgres.enabled), so no dumps")
        elif args.command == "backups":
            print(backups_report(host.run(list_backups_script(cfg))))
        else:
            if not args.backup:
                raise OpsError("BACKUP=<name> is missing: `make backups` lists the names")
            script = restore_script(cfg, f"{cfg.resource_prefix}-private", args.backup)
            if input(restore_warning(cfg, args.backup)).strip() != cfg.postgres.database:
                print("not restored")
                return 1
            print(host.run(script, stdin=password_env(cfg), timeout=3600))
    except (OpsError, AgentError, ValueError) as error:
        print(f"cutover: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
