"""One-shot migration run before a release's containers start.

    python -m migrate      (or: python migrate.py)

With DATABASE_URL (postgresql://USER:PASSWORD@HOST:PORT/DATABASE, which cutover gives every
role when its PostgreSQL accessory is on) it brings the database up to date: every migration
in MIGRATIONS that the table schema_migrations does not list yet is applied, in order, each in
a transaction of its own that also records it there. A migration that fails is rolled back and
the run exits 1, which stops the deploy before any container of the release starts. Without
DATABASE_URL there is no database, so nothing to migrate. It connects with pg8000 (pure Python).

Demo knobs (the e2e tests use them):
  APP_FAIL_MIGRATION="1"/"true"  fail with exit code 1 before touching anything
  APP_MIGRATION_SQL  SQL statements separated by ";", run after the migrations, one after
                     another, each committed on its own (autocommit); the first that fails
                     stops the run with exit code 1 and what ran before it stays done, like a
                     real migration that fails half-way. E.g. "DELETE FROM items; SELECT 1/0"
Nothing it prints names the password.
"""

import os
import sys
import urllib.parse
from typing import Any

TRUTHY = {"1", "true", "yes", "on"}

# (version, SQL): append new ones, never edit one that was released
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_create_visits",
        "CREATE TABLE visits (id bigserial PRIMARY KEY, path text NOT NULL, at timestamptz NOT NULL DEFAULT now())",
    ),
]


def connect(url: str) -> Any:
    """A pg8000.native.Connection (imported only when there is a database)."""
    import pg8000.native

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        raise ValueError(f"DATABASE_URL: expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE, not a {parts.scheme or 'schemeless'} URL")
    return pg8000.native.Connection(
        user=urllib.parse.unquote(parts.username or "postgres"),
        password=urllib.parse.unquote(parts.password or "") or None,
        host=parts.hostname,
        port=parts.port or 5432,
        database=urllib.parse.unquote(parts.path.lstrip("/")) or None,
        timeout=30,
    )


def statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def migrate(con: Any, version: str) -> None:
    con.run("CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
    applied = {row[0] for row in con.run("SELECT version FROM schema_migrations")}
    pending = [(name, sql) for name, sql in MIGRATIONS if name not in applied]
    for name, sql in pending:
        con.run("START TRANSACTION")
        try:
            con.run(sql)
            con.run("INSERT INTO schema_migrations (version) VALUES (:name)", name=name)
            con.run("COMMIT")
        except Exception:
            con.run("ROLLBACK")
            raise
        print(f"migrate: release {version}: applied {name}", flush=True)
    if not pending:
        print(f"migrate: release {version}: schema up to date, nothing to apply", flush=True)
    for statement in statements(os.environ.get("APP_MIGRATION_SQL", "")):
        con.run(statement)
        print(f"migrate: release {version}: ran {statement[:80]}", flush=True)


def main() -> int:
    version = os.environ.get("APP_VERSION", "dev")
    print(f"migrate: release {version}: checking schema", flush=True)
    if os.environ.get("APP_FAIL_MIGRATION", "").strip().lower() in TRUTHY:
        print(f"migrate: release {version}: FAILED (APP_FAIL_MIGRATION is set)", file=sys.stderr, flush=True)
        return 1
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        print(f"migrate: release {version}: no DATABASE_URL, nothing to migrate", flush=True)
        return 0
    try:
        con = connect(url)
        try:
            migrate(con, version)
        finally:
            con.close()
    except Exception as exc:  # a driver error names the statement's problem, never the URL
        print(f"migrate: release {version}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
