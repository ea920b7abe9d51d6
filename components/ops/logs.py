"""`make logs`: a role's logs, of the serving release, with `SINCE=`, `LINES=`, `GREP=` and follow or not."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from components.config.model import StackConfig
from components.ops.remote import N, S, sh_join

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
