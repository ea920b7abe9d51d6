"""`make backups` and `make restore`: the database's dumps listed, and one restored after a warning."""

from __future__ import annotations

from components.config.model import StackConfig


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
