"""`make status`: what runs on the server for the stack, each role's containers and the serving release."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from components.config.model import StackConfig
from components.edge.caddyfile import LIVE_DIR
from components.host.engine import LIVE_RESTORE_OFF

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
