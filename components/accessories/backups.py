"""Backups of the PostgreSQL accessory: a dump before every migration, kept on the server. Pure.

Each function returns a POSIX shell script the host runs (over the stack's own connection):

- `backup_script`: before a release's migration, `pg_dump -Fc` of the database into the
  backups volume (`<app>-<stack>-backups`), from a one-shot container of the accessory's own
  image on the private network; the file appears only once complete (written as `.partial`,
  then renamed); then all but the newest `keep` dumps are removed. A failed dump fails the
  release before its migration runs. The password arrives on stdin as an env file.
- `list_backups_script`: the dumps, newest first, with their sizes.
- `restore_script`: a dump back into the database (`pg_restore --clean --if-exists`), after a
  dump of what is there now (`before-restore`), so that a restore loses nothing either.
"""

from __future__ import annotations

import re
import shlex

from components.config.model import PostgresConfig, Secret, StackIdentity

BACKUPS_DIR = "/backups"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.dump$")


def backups_volume(identity: StackIdentity) -> str:
    return f"{identity.resource_prefix}-backups"


def _run_in_postgres_image(identity: StackIdentity, postgres: PostgresConfig, network: str, inner: str, role: str) -> str:
    argv = [
        "docker", "run", "--rm", "--env-file", "/dev/stdin", "--network", network,
        "-v", f"{backups_volume(identity)}:{BACKUPS_DIR}",
        "--label", f"cutover.app={identity.app_name}", "--label", f"cutover.stack={identity.stack}", "--label", f"cutover.role={role}",
        postgres.image, "sh", "-c", inner,
    ]  # fmt: skip
    return shlex.join(argv)


def _dump(p: PostgresConfig, name_expr: str) -> str:
    """Shell statements (for a `set -eu` script) that dump the database into `name_expr`, or exit 1.

    Each is a statement of its own: `set -e` ignores a failure anywhere in an `a && b` list but its
    end, so a failed pg_dump chained with `&&` would let the script go on and exit 0 without a dump.
    """
    target = f"{BACKUPS_DIR}/{name_expr}"
    return (
        f"pg_dump --format=custom --host=postgres --username={shlex.quote(p.user)} --dbname={shlex.quote(p.database)}"
        f' --file="{target}.partial" || {{ rm -f "{target}.partial"; echo "no dump: pg_dump failed" >&2; exit 1; }}; '
        f'mv "{target}.partial" "{target}"; ls -l "{target}"'
    )


def backup_script(identity: StackIdentity, postgres: PostgresConfig, network: str, release: str) -> str:
    """Dump the database before `release`'s migration, then keep the newest `postgres.backupsKept` dumps."""
    keep = postgres.backups_kept
    tag = re.sub(r"[^A-Za-z0-9._-]", "-", release)[:12]
    inner = (
        "set -eu; "
        f'name="$(date -u +%Y%m%dT%H%M%SZ)-{tag}.dump"; '
        + _dump(postgres, "$name")
        + f'; ls -1t {BACKUPS_DIR}/*.dump | tail -n +{keep + 1} | while read -r old; do rm -f "$old"; echo "removed $old"; done'
    )
    return "set -eu\n" + _run_in_postgres_image(identity, postgres, network, inner, "backup")


def list_backups_script(identity: StackIdentity, postgres: PostgresConfig) -> str:
    """The dumps on the server, newest first: name, size in bytes, time."""
    argv = ["docker", "run", "--rm", "-v", f"{backups_volume(identity)}:{BACKUPS_DIR}:ro", "--network", "none", postgres.image, "sh", "-c"]
    inner = f'cd {BACKUPS_DIR} && for f in $(ls -1t *.dump 2>/dev/null); do echo "$f $(wc -c < "$f") $(date -u -r "$f" +%Y-%m-%dT%H:%M:%SZ)"; done'
    return "set -eu\n" + shlex.join([*argv, inner])


def restore_script(identity: StackIdentity, p: PostgresConfig, network: str, backup: str) -> str:
    """Dump what the database holds now (`before-restore`), then restore `backup` over it."""
    if not _NAME.match(backup) or "/" in backup:
        raise ValueError(
            f"BACKUP={backup!r}: expected the name of a dump as `make backups` lists it, like 20261129T010203Z-0123456789ab.dump"
        )
    inner = (
        "set -eu; "
        f'test -f {BACKUPS_DIR}/{shlex.quote(backup)} || {{ echo "no dump {backup} on the server" >&2; exit 1; }}; '
        f'before="$(date -u +%Y%m%dT%H%M%SZ)-before-restore.dump"; '
        + _dump(p, "$before")
        + f'; echo "what the database held is in {BACKUPS_DIR}/$before"; '
        f"pg_restore --clean --if-exists --no-owner --host=postgres --username={shlex.quote(p.user)} --dbname={shlex.quote(p.database)}"
        f" {BACKUPS_DIR}/{shlex.quote(backup)}; echo 'restored {backup}'"
    )
    return "set -eu\n" + _run_in_postgres_image(identity, p, network, inner, "restore")


def password_env(postgres: PostgresConfig) -> Secret:
    """The env file the scripts read on stdin (the accessory's password: a secret, and so is this)."""
    assert postgres.password is not None
    return postgres.password.derive(lambda pw: f"PGPASSWORD={pw}\n")
