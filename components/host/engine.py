"""What the program asks of the host's Docker engine itself. Pure.

`live-restore` keeps containers running while the engine restarts (README: live-restore); the
deploy output (the go-live step, components/release/go_live.py) and `make status` (components/ops/status.py) say
when it is off.
"""

from __future__ import annotations

import shlex

# What an engine without live-restore costs, said by `make status` and at the end of every go-live step.
LIVE_RESTORE_OFF = (
    "live-restore is off: a restart or upgrade of the engine stops every container; "
    'put {"live-restore": true} in /etc/docker/daemon.json (README: live-restore)'
)


def live_restore_note() -> str:
    """A note on stderr when the host's engine has live-restore off (`docker info`, as `make status` reads it).
    The deploy output shows it: pulumi-command logs a remote command's stdout and stderr unless `logging` says
    otherwise (its schema, command:remote:Command inputProperties.logging: "Defaults to logging both")."""
    asked = "docker info --format '{{.LiveRestoreEnabled}}' 2>/dev/null || true"
    note = shlex.quote("note: this host's Docker engine: " + LIVE_RESTORE_OFF)
    return f'if [ "$({asked})" = false ]; then echo {note} >&2; fi'
