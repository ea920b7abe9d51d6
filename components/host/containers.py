"""What every container the program runs on the host carries: its labels and the hardening they share. Pure.

Web's, each role's, the accessories' and the edge's containers (and a cluster's services, which
take what a service can carry of it: components/cluster/service.py) are all made with these.
"""

from __future__ import annotations

from typing import Any

from components.config.model import StackIdentity

LOG_OPTS = {"max-size": "10m", "max-file": "3"}


TMPFS_MB = 64  # each writable tmpfs of a role


TMPFS_OPTIONS = f"rw,noexec,nosuid,size={TMPFS_MB}m"


HARDENING: dict[str, Any] = {
    "security_opts": ["no-new-privileges:true"],
    "capabilities": {"drops": ["ALL"]},
    "restart": "unless-stopped",
    "log_driver": "json-file",
    "log_opts": LOG_OPTS,
    "init": True,
}


def labels(identity: StackIdentity, role: str, extra: dict[str, str] | None = None) -> list[Any]:
    """Labels telling which app, stack and role a container belongs to (and which release, for web)."""
    values = {"cutover.app": identity.app_name, "cutover.stack": identity.stack, "cutover.role": role, **(extra or {})}
    return [{"label": k, "value": v} for k, v in sorted(values.items())]
