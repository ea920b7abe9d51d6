"""`make exec`, `restart`, `stop`, `start`: a command in a role's running container or in a one-off one of the
serving release, with its env; a role's containers stopped and started."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from components.accessories.connections import connection_env
from components.config.model import RoleConfig, Secret, StackConfig
from components.ops.remote import IMAGE, NAME, N, OpsError, sh_join
from components.release.containers import role_env, web_env


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


def single_host(cfg: StackConfig, command: str) -> None:
    if cfg.cluster.enabled:
        raise OpsError(
            f"make {command} acts on one engine's containers; stack {cfg.stack} is a Swarm cluster (cluster.enabled), whose "
            "tasks run on any node: use `docker service` on the manager"
        )


def role_of(cfg: StackConfig, role: str) -> RoleConfig | None:
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
    own = role_of(cfg, role)
    connections = connection_env(cfg.postgres, cfg.redis)
    pairs = web_env(cfg.web, connections) if own is None else role_env(cfg.web, own, connections)
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
    own = role_of(cfg, role)
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
