"""Day-to-day commands on a stack's server: status, logs, a command in a container, restart/stop/start of a
role, the database's dumps, a restore.

    python -m components.ops status  --stack prod      (make status STACK=prod)
    python -m components.ops logs    --stack prod [--role worker] [--follow] [--since 10m] [--lines 50] [--grep text]
    python -m components.ops exec    --stack prod [--role web] [--new] --cmd 'bin/rails console'
    python -m components.ops restart --stack prod [--role worker]        (stop, start: the same; stop web: --confirm)
    python -m components.ops backups --stack prod
    python -m components.ops restore --stack prod --backup <name>

The stack's config comes from `pulumi config --json --show-secrets` and is read with the model
the program uses (components/config/load.py); its release from `pulumi stack output`. The server is
reached the one way the docker provider reaches it: the system ssh with the same options
(components/host/ssh.py) and the deploy key in the ssh agent (put there as the program does); a
local (unix://) stack runs docker here. The scripts run on the server are pure functions of the
config; so are the reports made from what they print.
"""

from __future__ import annotations

import argparse
import contextlib
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

from components.accessories.backups import list_backups_script, password_env, restore_script
from components.config.load import parse_config, project_name
from components.config.model import NAMESPACE, RoleConfig, Secret, StackConfig
from components.edge.caddyfile import LIVE_DIR
from components.host.engine import LIVE_RESTORE_OFF
from components.host.ssh import AgentError, docker_ssh_options, load_deploy_key
from components.release.containers import role_env, web_env


class OpsError(RuntimeError):
    """A command that cannot be carried out, said in one line."""


# --------------------------------------------------------------------------- reaching the stack


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
            # whether an engine restart keeps the containers running (moby api/types/system Info.LiveRestoreEnabled)
            "echo '### live-restore'",
            "docker info --format '{{.LiveRestoreEnabled}}' 2>/dev/null || true",
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
    lines.append(f"docker: {(parts.get('docker') or '?').strip()}{_live_restore(parts.get('live-restore'))}")
    return "\n".join(lines)


def _live_restore(shown: str | None) -> str:
    """What `docker info` says of live-restore, as the end of the report's docker line."""
    value = (shown or "").strip()
    if value == "true":
        return ", live-restore on"
    if value == "false":
        return "; " + LIVE_RESTORE_OFF
    return ""


# --------------------------------------------------------------------------- logs


class ShellVar(str):
    """A word of an argument list that is one of the scripts' own shell variables, filled in on the server (a
    word of CMD= that reads "$name" is text like any other, and stays as written)."""

    __slots__ = ()


N, S, NAME, IMAGE = ShellVar("$n"), ShellVar("$s"), ShellVar("$name"), ShellVar("$image")


def sh_join(argv: Sequence[str]) -> str:
    """An argument list as one shell command line: every word quoted, but the scripts' own variables."""
    return " ".join(f'"{a}"' if isinstance(a, ShellVar) else shlex.quote(a) for a in argv)


# `docker logs --since` takes a Go duration back from now or a time (docker/cli cli/command/container/logs.go;
# the daemon reads it with api/types/time GetTimestamp: RFC 3339 in part or whole, or Unix seconds)
SINCE = re.compile(r"^((\d+(ns|us|ms|s|m|h))+|\d{4}-\d\d-\d\d(T\d\d(:\d\d(:\d\d(\.\d{1,9})?)?)?(Z|[+-]\d\d:\d\d)?)?|\d{9,10}(\.\d{1,9})?)$")
LINES = re.compile(r"^(\d{1,7}|all)$")


@dataclass(frozen=True)
class LogOptions:
    """What `make logs` shows: the last `lines` (or since `since`), then new lines while `follow`; only the lines
    containing `grep` (a plain string, matched as it is) when given."""

    follow: bool = False
    lines: str = "100"
    since: str = ""
    grep: str = ""

    def problems(self) -> list[str]:
        found = []
        if not LINES.match(self.lines):
            found.append(f"LINES={self.lines!r}: expected a whole number of lines from the end, or all")
        if self.since and not SINCE.match(self.since):
            found.append(f"SINCE={self.since!r}: expected a duration back from now like 10m or 1h30m, or a time like 2026-11-29T10:00:00Z")
        if "\n" in self.grep:
            found.append("GREP: expected one line of text")
        return found


def logs_argv(options: LogOptions, *, service: bool = False) -> list[str]:
    """`docker logs` of the container in "$n" (or, on a cluster, `docker service logs` of the service in "$s"), with its flags."""
    return [
        "docker", *(["service"] if service else []), "logs", "--timestamps", "--tail", options.lines,
        *(["--since", options.since] if options.since else []), *(["--follow"] if options.follow else []), S if service else N,
    ]  # fmt: skip


def _filter_lines(options: LogOptions, prefix: str) -> str:
    """A shell loop of builtins only (read, case, printf): each line is written as soon as it is read, where grep
    or sed would hold lines back in a buffer while following into a pipe; a line without the text is dropped."""
    return (
        f'while IFS= read -r line || [ -n "$line" ]; do case "$line" in *{shlex.quote(options.grep)}*) '
        f"printf '%s\\n' {prefix}\"$line\";; esac; done"
    )


NAME_PREFIX = '"$n | "'  # each line of a container's log starts with its name


def logs_script(cfg: StackConfig, role: str, *, follow: bool | None = None, tail: int = 100, options: LogOptions | None = None) -> str:
    """The logs of the role's running containers, each line prefixed with its container's name (on a cluster,
    of the role's services, whose tasks run on any node: Swarm gathers them, each line prefixed with its task)."""
    options = options or LogOptions(follow=bool(follow), lines=str(tail))
    labels = (
        f"--filter label=cutover.app={shlex.quote(cfg.app_name)} --filter label=cutover.stack={shlex.quote(cfg.stack)} "
        f"--filter label=cutover.role={shlex.quote(role)}"
    )
    if cfg.cluster.enabled:
        return "\n".join(
            [
                "set -u",
                f'services="$(docker service ls -q {labels})"',
                f'if [ -z "$services" ]; then echo "no service of role {role}" >&2; exit 1; fi',
                f"for s in $services; do ({sh_join(logs_argv(options, service=True))} 2>&1 | {_filter_lines(options, '')}) & done",
                "wait",
            ]
        )
    return "\n".join(
        [
            "set -u",
            f'names="$(docker ps --format "{{{{.Names}}}}" {labels} --filter status=running)"',
            f'if [ -z "$names" ]; then echo "no running container of role {role}" >&2; exit 1; fi',
            f"for n in $names; do ({sh_join(logs_argv(options))} 2>&1 | {_filter_lines(options, NAME_PREFIX)}) & done",
            "wait",
        ]
    )


# --------------------------------------------------------------------------- a role's containers of the serving release


def app_roles(cfg: StackConfig) -> list[str]:
    """The roles that run the release's image: web (unless web.enabled is false), then the stack's own."""
    return (["web"] if cfg.web.enabled else []) + [r.name for r in cfg.roles]


def serving_tag(release: Mapping[str, Any] | None, stack: str) -> str:
    """The serving release's tag: its containers carry it as the label cutover.release (components/release/web.py, roles.py)."""
    tag = release.get("tag") if isinstance(release, Mapping) else None
    if not isinstance(tag, str) or not tag:
        raise OpsError(f"stack {stack} records no release yet: `make deploy STACK={stack}` first")
    return tag


def release_filters(cfg: StackConfig, role: str, tag: str) -> str:
    return " ".join(
        f"--filter label={shlex.quote(f'{k}={v}')}"
        for k, v in (("cutover.app", cfg.app_name), ("cutover.stack", cfg.stack), ("cutover.role", role), ("cutover.release", tag))
    )


def _single_host(cfg: StackConfig, command: str) -> None:
    if cfg.cluster.enabled:
        raise OpsError(
            f"make {command} acts on one engine's containers; stack {cfg.stack} is a Swarm cluster (cluster.enabled), whose "
            "tasks run on any node: use `docker service` on the manager"
        )


def _role_of(cfg: StackConfig, role: str) -> RoleConfig | None:
    """The role's own settings (None for web); refuses a role the stack does not run."""
    if role not in app_roles(cfg):
        raise OpsError(f"ROLE={role!r}: expected one of the roles stack {cfg.stack} runs: {', '.join(app_roles(cfg)) or 'none'}")
    return next((r for r in cfg.roles if r.name == role), None)


def exec_argv(command: Sequence[str], *, interactive: bool) -> list[str]:
    """`docker exec` of `command` in the running container named "$name"; with this terminal's input and a
    terminal of its own when `interactive` (as Kamal's `app exec --interactive --reuse`). It exits with the
    command's status (docker/cli cli/command/container/exec.go getExecExitStatus)."""
    return ["docker", "exec", *(["--interactive", "--tty"] if interactive else []), NAME, *command]


def exec_script(cfg: StackConfig, role: str, tag: str, command: Sequence[str], *, interactive: bool) -> str:
    """Run `command` in one running container of the role's serving release (the first `docker ps` lists)."""
    return "\n".join(
        [
            "set -u",
            f"name=\"$(docker ps --format '{{{{.Names}}}}' {release_filters(cfg, role, tag)} --filter status=running | head -n 1)\"",
            f'if [ -z "$name" ]; then echo {shlex.quote(f"no running container of role {role} in release {tag}")} >&2; exit 1; fi',
            "exec " + sh_join(exec_argv(command, interactive=interactive)),
        ]
    )


def one_off_env(cfg: StackConfig, role: str, tag: str) -> list[tuple[str, str | Secret]]:
    """The environment the role's containers of release `tag` have (components/release/web.py env_output), secrets included."""
    own = _role_of(cfg, role)
    pairs = web_env(cfg) if own is None else role_env(cfg, own)
    return [("APP_VERSION", tag), *pairs]


def env_stdin(pairs: Sequence[tuple[str, str | Secret]]) -> str:
    """The environment as NAME=value lines, for the script's standard input: the only place the values go."""
    lines = []
    for name, value in pairs:
        text = value.reveal() if isinstance(value, Secret) else value
        if "\n" in text:
            raise OpsError(f"{name}: a value of more than one line cannot be passed to a container's environment")
        lines.append(f"{name}={text}\n")
    return "".join(lines)


def one_off_argv(cfg: StackConfig, role: str, tag: str, names: Sequence[str], command: Sequence[str], *, interactive: bool) -> list[str]:
    """`docker create` of a container to run `command` once in the image "$image" of the role's serving release,
    with the role's environment by name only: the docker CLI takes the value of a bare `--env NAME` from its own
    environment (docker/cli opts/env.go ValidateEnv), so no value is on a command line. `--rm`: the engine removes
    it once it exits (docker/cli cli/command/container/opts.go: `--rm` is HostConfig.AutoRemove, for create too). It joins the accessories' network as the role's
    containers do, runs as their user, and is labelled `<role>-one-off`, which no release step, `make logs` or
    `make restart` of the role matches (their filters name the role exactly)."""
    network = [f"{cfg.resource_prefix}-private"] if cfg.postgres.enabled or cfg.redis.enabled else []
    labels = {"cutover.app": cfg.app_name, "cutover.stack": cfg.stack, "cutover.role": f"{role}-one-off", "cutover.release": tag}
    return [
        "docker", "create", "--rm", "--init", *(["--interactive", "--tty"] if interactive else []),
        "--user", cfg.web.user, *(["--network", network[0]] if network else []),
        *(a for k, v in labels.items() for a in ("--label", f"{k}={v}")),
        *(a for n in names for a in ("--env", n)),
        IMAGE, *command,
    ]  # fmt: skip


def one_off_create_script(cfg: StackConfig, role: str, tag: str, names: Sequence[str], command: Sequence[str], *, interactive: bool) -> str:
    """Read NAME=value lines from standard input into the shell's environment (`read` and `export` are builtins:
    no process, so no value is on any command line), find the image of the role's serving release from one of
    its containers, and create the one-off container; its ID is what this prints."""
    return "\n".join(
        [
            "set -eu",
            'while IFS= read -r line; do export "$line"; done',
            f'ref="$(docker ps -aq {release_filters(cfg, role, tag)} | head -n 1)"',
            f'if [ -z "$ref" ]; then echo {shlex.quote(f"no container of role {role} in release {tag} on the server")} >&2; exit 1; fi',
            'image="$(docker inspect --format \'{{.Image}}\' "$ref")"',
            sh_join(one_off_argv(cfg, role, tag, names, command, interactive=interactive)),
        ]
    )


def one_off_start_script(container_id: str, *, interactive: bool) -> str:
    """Run the created container attached, then make sure it is gone; the script exits with the container's status
    (an attached `docker start` waits for the container and returns its exit status: docker/cli
    cli/command/container/start.go RunStart)."""
    if not re.fullmatch(r"[0-9a-f]{12,64}", container_id):
        raise OpsError(f"docker create answered {container_id[:80]!r}: expected a container ID")
    start = ["docker", "start", "--attach", *(["--interactive"] if interactive else []), container_id]
    return "\n".join([shlex.join(start), "rc=$?", f"docker rm --force {container_id} >/dev/null 2>&1 || true", 'exit "$rc"'])


LIFECYCLE = ("restart", "stop", "start")


def lifecycle_argv(action: str, names: Sequence[str], stop_timeout_s: int) -> list[str]:
    """`docker restart|stop|start` of the named containers. Stop and restart send the containers' stop signal
    (SIGTERM) and wait the role's stopTimeout before killing, named with --time rather than left to the CLI and
    the engine (docker/cli cli/command/container/stop.go sends a timeout only when --time is given; the engine
    then takes the container's own, which the program sets to the same)."""
    if action not in LIFECYCLE:
        raise ValueError(action)
    return ["docker", action, *(["--time", str(stop_timeout_s)] if action != "start" else []), *names]


def lifecycle_script(cfg: StackConfig, role: str, tag: str, action: str) -> str:
    """restart: one container at a time, each waited for until it is healthy (running, without a health check)
    before the next, so the others keep serving; start: all, then each waited for; stop: all at once. A started
    or restarted container's health is `starting` again until its probe passes (moby daemon/health.go
    initHealthMonitor), so "healthy" is never the state from before. While a web container restarts, the proxy
    retries its requests on the other slots (lb_try_duration, fail_duration: components/edge/caddyfile.py cites Caddy)."""
    own = _role_of(cfg, role)
    wait_s = cfg.web.wait_timeout_s if own is None else own.wait_timeout_s
    stop_s = cfg.web.stop_timeout_s if own is None else own.stop_timeout_s
    state = shlex.quote("{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}")
    ready = (
        f'ready() {{ i=0; while :; do s="$(docker inspect --format {state} "$1")"; case "$s" in healthy|running) echo "$1: $s"; return 0;; '
        f'unhealthy|exited|dead) echo "$1: $s" >&2; return 1;; esac; i=$((i + 1)); '
        f'if [ "$i" -ge {wait_s} ]; then echo "$1: still $s after {wait_s}s" >&2; return 1; fi; sleep 1; done; }}'
    )
    body = {
        "restart": [
            f'for n in $names; do {sh_join(lifecycle_argv("restart", [N], stop_s))} >/dev/null || exit 1; ready "$n" || exit 1; done'
        ],
        "stop": [sh_join(lifecycle_argv("stop", [], stop_s)) + " $names"],
        "start": [
            sh_join(lifecycle_argv("start", [], stop_s)) + " $names >/dev/null || exit 1",
            'for n in $names; do ready "$n" || exit 1; done',
        ],
    }[action]
    return "\n".join(
        [
            "set -u",
            ready,
            f"names=\"$(docker ps -a --format '{{{{.Names}}}}' {release_filters(cfg, role, tag)})\"",
            f'if [ -z "$names" ]; then echo {shlex.quote(f"no container of role {role} in release {tag}")} >&2; exit 1; fi',
            *body,
        ]
    )


def stop_warning(role: str, stack: str) -> str:
    return (
        f"make stop ROLE={role} stops every web container of the release serving {stack}: the proxy still routes to them, "
        "so the site answers with errors until `make start` (or the next release); add CONFIRM=1 to stop them"
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
            _single_host(cfg, args.command)
            _role_of(cfg, args.role)
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
            print(backups_report(host.run(list_backups_script(cfg))))
        else:
            if not args.backup:
                raise OpsError("BACKUP=<name> is missing: `make backups` lists the names")
            script = restore_script(cfg, f"{cfg.resource_prefix}-private", args.backup)
            if input(restore_warning(cfg, args.backup)).strip() != cfg.postgres.database:
                print("not restored")
                return 1
            print(host.run(script, stdin=password_env(cfg).reveal(), timeout=3600))
    except (OpsError, AgentError, ValueError) as error:
        print(f"cutover: {error}", file=sys.stderr)
        return 1
    return 0
