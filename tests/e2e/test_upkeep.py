"""Living with it on a real Docker engine: dumps before migrations, a restore, bounded disk, status and logs.

A stack with the PostgreSQL accessory (postgres:15, a stand-in built from Debian's PostgreSQL 15
when none can be pulled: tests/e2e/infra.py POSTGRES_STANDIN), migrations on (app/migrate.py, a
real runner on pg8000), `releases.imagesKept` 3, applied by tests/e2e/replay like the other
scenarios, over ssh, with a real registry and Caddy:

    1  first deploy: the accessory's own health check passes; the first release's dump is taken
       before its migration (it has no schema_migrations table yet, the database then has)
    2  100k rows written; a release whose migration adds a table: its dump holds the 100k rows
       and not that table, and ends before the migration starts. Dump time and size recorded
    3  a dump that cannot be taken (the database is down) fails the release before its migration
    4  a migration that deletes rows and then fails: the release fails, the old one still
       answers through the proxy, the dump taken just before it holds every row; `restore`
       through `python -m components.ops` brings back exactly the rows from before. Restore time
    5  `python -m components.ops status|logs|backups` (a stand-in `pulumi` answers for the stack
       as the CLI does): the containers that run and their health, the proxy's upstreams, lines
       the app wrote, the dump the release took
    6  15 releases in a row, each with code of its own: never more than 3 app images on the
       host, their disk use before and after; a rollback to the oldest kept release with the
       registry down goes live (no pull), while one to a release whose image was removed cannot

No secret (the database's password, the registry's, the deploy key) appears in anything the
commands or the release steps print. Every scenario records its numbers (conftest.py).
Run: .venv/bin/pytest -m e2e tests/e2e/test_upkeep.py -v
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import infra
from tests.e2e.conftest import record, tools_problem, unavailable
from tests.e2e.infra import get_json
from tests.e2e.replay.docker_api import DockerAPI
from tests.e2e.replay.engine import ApplyResult, Engine, UpdateFailedError
from tests.e2e.replay.stack import (
    SECRET_KEYS,
    Stack,
    e2e_config_on,
    ensure_app_wheels,
    fake_sha,
    merge,
    remove_leftovers,
    remove_stack_objects,
)

pytestmark = pytest.mark.e2e

STACK = "upkeep"
POSTGRES = f"web-{STACK}-postgres"
BACKUPS = f"web-{STACK}-backups"
IMAGES_KEPT = 3
BACKUPS_KEPT = 5
ROWS = 100_000
# the rows scenario 2 writes: 100k of them, about 100 bytes each
ITEMS_SQL = (
    "CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, amount integer NOT NULL); "
    "INSERT INTO items SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text), g % 1000 FROM generate_series(1, 100000) g"
)
RELEASES = 15
CODE_BYTES = 2 * 1024 * 1024  # what each release of scenario 6 adds of its own (random, so incompressible)

# A stand-in for the pulumi CLI: the two commands components/ops/ runs, answered from the stack's config and
# outputs (written by the test to STATE) in the CLI's formats; anything else is an error, as for an unknown command.
PULUMI = """#!{python}
import json, sys
state = json.load(open({state!r}))
args = sys.argv[1:]
stack = args[args.index("--stack") + 1] if "--stack" in args else None
if stack != state["stack"]:
    print(f"error: no stack named '{{stack}}' found", file=sys.stderr)
    sys.exit(255)
rest = [a for a in args if a not in ("--stack", stack)]
if rest == ["config", "--json", "--show-secrets"]:
    print(json.dumps(state["config"], indent=4))
elif rest == ["stack", "output", "release", "--json"]:
    print(json.dumps(state["outputs"]["release"], indent=2))
else:
    print("error: unknown command for this stand-in: " + " ".join(args), file=sys.stderr)
    sys.exit(2)
"""


def cli_config_json(config: dict[str, Any], secret_keys: set[str]) -> dict[str, Any]:
    """`pulumi config --json --show-secrets` (pulumi/pulumi pkg/cmd/pulumi/config/config.go, configValueJSON): each
    key namespaced, its value as a string, an object's also parsed under objectValue, and whether it is a secret."""
    out: dict[str, Any] = {}
    for key, value in sorted(config.items()):
        entry: dict[str, Any] = {"secret": key in secret_keys}
        if isinstance(value, (dict, list)):
            entry["value"] = json.dumps(value)
            entry["objectValue"] = value
        else:
            entry["value"] = value if isinstance(value, str) else json.dumps(value)
        out[f"cutover:{key}"] = entry
    return out


@dataclasses.dataclass
class Upkeep:
    stack: Stack
    engine: Engine
    registry: infra.Registry
    port: int
    salt: str
    machine: dict[str, str]
    workdir: Path
    secrets: list[str]  # every secret of the stack: none may appear in what is printed
    context: Path  # a copy of app/ whose code each release of scenario 6 changes
    code: str = ""  # app/bot.py as it is

    def sha(self, label: str) -> str:
        return fake_sha(label, self.salt)

    def up(self, label: str, **kwargs: Any) -> ApplyResult:
        return self.stack.up(sha=self.sha(label), **kwargs)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def repository(self) -> str:
        return f"{self.registry.address}/cutover/web"

    @property
    def postgres_image(self) -> str:
        return str(self.stack.config["postgres"]["image"])

    def psql(self, sql: str) -> str:
        """SQL in the accessory's own container (psql over its socket, as its user)."""
        return infra.docker("exec", POSTGRES, "psql", "-U", "app", "-d", "app", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql).stdout.strip()

    def in_backups(self, *argv: str) -> str:
        """A command in a container of the postgres image with the backups volume (read-only), no network."""
        return infra.docker("run", "--rm", "--network", "none", "-v", f"{BACKUPS}:/backups:ro", self.postgres_image, *argv).stdout

    def files(self) -> list[str]:
        """Every file in the backups volume, newest first."""
        return self.in_backups("sh", "-c", "ls -1At /backups").split()

    def dumps(self) -> list[str]:
        return [n for n in self.files() if n.endswith(".dump")]

    def dump_of(self, label: str) -> str:
        found = [n for n in self.dumps() if n.endswith(f"-{self.sha(label)[:12]}.dump")]
        assert len(found) == 1, (label, self.dumps())
        return found[0]

    def dump_tables(self, name: str) -> set[str]:
        toc = self.in_backups("pg_restore", "--list", f"/backups/{name}")
        return {line.split()[-2] for line in toc.splitlines() if re.search(r"\bTABLE public \S+ \S+$", line)}

    def dump_rows(self, name: str, table: str) -> int:
        """The rows of `table` in a dump, counted in its COPY data."""
        data = self.in_backups("pg_restore", "--data-only", f"--table={table}", "--file=-", f"/backups/{name}").splitlines()
        start = next(i for i, line in enumerate(data) if line.startswith(f"COPY public.{table} "))
        return data.index("\\.", start) - start - 1

    def items(self) -> str:
        """The count and a checksum of every row of the test's table."""
        return self.psql("SELECT count(*) || ' ' || md5(string_agg(id || ':' || name || ':' || amount, ',' ORDER BY id)) FROM items")

    def ops(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """`python -m components.ops ARGS --stack upkeep` as `make status|logs|backups|restore` runs it, on this
        machine (its ssh agent), with the stand-in pulumi answering from the stack as it stands now."""
        state = {
            "stack": self.stack.name,
            "config": cli_config_json(self.stack.config, self.stack.secret_keys),
            "outputs": self.stack.outputs,
        }
        (self.workdir / "pulumi-state.json").write_text(json.dumps(state))
        env = {**self.machine, "PATH": f"{self.workdir / 'bin'}{os.pathsep}{self.machine.get('PATH', os.defpath)}"}
        done = subprocess.run(
            [sys.executable, "-m", "components.ops", *args, "--stack", self.stack.name],
            env=env,
            cwd=infra.REPO_ROOT,
            input=input,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        self.assert_no_secret(done.stdout + done.stderr)
        return done

    def assert_no_secret(self, text: str) -> None:
        for secret in self.secrets:
            assert secret not in text, "a secret of the stack was printed"

    def assert_no_secret_in(self, result: ApplyResult) -> None:
        """Nothing any step of an update printed or reported holds a secret."""
        self.assert_no_secret("\n".join(o.detail for o in result.ops))
        for applied in self.engine.state.values():
            self.assert_no_secret(str(applied.outputs.get("stdout", "")) + str(applied.outputs.get("stderr", "")))


@pytest.fixture(scope="module")
def upkeep(docker_engine: infra.Engine, e2e_results: dict[str, Any]) -> Iterator[Upkeep]:
    problem = tools_problem("docker-registry", "htpasswd", "sshd", "ssh", "ssh-keygen", "ssh-agent", "ssh-add", root=True)
    if problem:
        unavailable(problem)
    infra.ensure_base_images()
    e2e_results.setdefault("timings", {})["postgres_image"] = infra.ensure_base_images(standins=(infra.POSTGRES_STANDIN,))[0]["source"]
    ensure_app_wheels()
    password = f"pg-{secrets.token_hex(12)}"
    with (
        infra.start_registry() as registry,
        infra.start_sshd() as host,
        infra.ssh_agent() as machine,
        tempfile.TemporaryDirectory(prefix="cutover-upkeep-") as tmp,
    ):
        workdir = Path(tmp)
        remove_stack_objects(STACK)  # what an interrupted run left
        engine = Engine(env=machine, log=infra.log)
        port = infra.free_port()
        base = e2e_config_on(registry, host, port, replicas=1)
        config = merge(
            base,
            {
                "postgres": {"enabled": True, "image": infra.POSTGRES_STANDIN.name, "backupsKept": BACKUPS_KEPT},
                "postgresPassword": password,
                # no probation and a short drain: what is measured here is not the switch
                "releases": {"probation": "0s", "imagesKept": IMAGES_KEPT},
                "proxy": {"drain": "1s"},
            },
        )
        (workdir / "bin").mkdir()
        pulumi = workdir / "bin" / "pulumi"
        pulumi.write_text(PULUMI.format(python=sys.executable, state=str(workdir / "pulumi-state.json")))
        pulumi.chmod(0o755)
        context = workdir / "context"
        shutil.copytree(infra.APP_DIR, context, ignore=shutil.ignore_patterns("__pycache__"))
        # the key's lines past the first (which every unencrypted ed25519 key shares)
        key_lines = host.private_key.strip().splitlines()[2:-1]
        env = Upkeep(
            Stack(engine, config, SECRET_KEYS | {"postgresPassword"}, name=STACK),
            engine,
            registry,
            port,
            secrets.token_hex(4),
            machine,
            workdir,
            [password, registry.password, *key_lines],
            context,
            (infra.APP_DIR / "bot.py").read_text(),
        )
        try:
            yield env
        finally:
            teardown(env)


def teardown(env: Upkeep) -> None:
    """The stack's containers, networks and volumes (the retained ones too) and its images go."""
    remove_leftovers(env.engine, STACK)
    images = infra.docker("images", "--format", "{{.ID}}", env.repository, check=False)
    for image_id in sorted(set(images.stdout.split())):
        infra.docker("rmi", "--force", image_id, check=False)


# --------------------------------------------------------------------------- helpers


def seconds(result: ApplyResult, name: str) -> float:
    op = result.step(name)
    assert op is not None and op.ok, result.actions()
    return op.end - op.start


def stack_containers() -> dict[str, str]:
    """name -> health ("-" without a health check) of every container of the stack, by its labels."""
    names = infra.docker(
        "ps", "-a", "--filter", "label=cutover.app=web", "--filter", f"label=cutover.stack={STACK}", "--format", "{{.Names}}"
    ).stdout.split()
    fmt = "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}}"
    out = infra.docker("inspect", "--format", fmt, *names).stdout if names else ""
    return {n.lstrip("/"): h for n, h in (line.split() for line in out.splitlines() if line.strip())}


def live_upstreams() -> list[str]:
    out = infra.docker(
        "exec",
        infra.proxy_container(STACK),
        "sh",
        "-c",
        'for f in $(ls /etc/caddy/live | sort -n); do cat "/etc/caddy/live/$f"; echo; done',
    )
    return out.stdout.split()


def image_ids(env: Upkeep) -> set[str]:
    """The app's images on the host (`docker images <repository>`), one per ID."""
    return set(infra.docker("images", "--no-trunc", "--format", "{{.ID}}", env.repository).stdout.split())


def app_images(env: Upkeep) -> dict[str, dict[str, Any]]:
    """The app's images on the host, with their size and the part of it no other image shares, as the engine
    counts them (GET /system/df, what `docker system df -v` shows)."""
    listed = image_ids(env)
    df = DockerAPI("unix:///var/run/docker.sock").call("GET", "/system/df", timeout=300)
    return {i["Id"]: {"size": i["Size"], "unique": i["Size"] - max(i["SharedSize"], 0)} for i in df["Images"] if i["Id"] in listed}


def mb(n: float) -> float:
    return round(n / 1e6, 1)


# --------------------------------------------------------------------------- 1. first deploy


def test_1_first_deploy_with_postgres_dumps_before_the_first_migration(upkeep: Upkeep, e2e_results: dict[str, Any]) -> None:
    result = upkeep.up("r1")
    upkeep.assert_no_secret_in(result)
    state = json.loads(infra.docker("inspect", "--format", "{{json .State}}", POSTGRES).stdout)
    health = json.loads(infra.docker("inspect", "--format", "{{json .Config.Healthcheck}}", POSTGRES).stdout)
    assert health["Test"] == ["CMD", "pg_isready", "-U", "app", "-d", "app"], "the accessory's own probe"
    assert state["Health"]["Status"] == "healthy" and state["Health"]["Log"][-1]["ExitCode"] == 0
    assert upkeep.psql("SELECT current_user || ' ' || current_database()") == "app app"
    assert upkeep.psql("SELECT version FROM schema_migrations") == "0001_create_visits", "the app's migration ran"
    dump = upkeep.dump_of("r1")
    assert upkeep.dumps() == [dump]
    assert "schema_migrations" not in upkeep.dump_tables(dump), "the dump was taken before the first migration"
    backup, migrate = result.step("web-backup"), result.step("web-migrate")
    assert backup is not None and migrate is not None and backup.end <= migrate.start
    assert get_json(upkeep.url("/health")) == (200, {"status": "ok", "version": upkeep.sha("r1")})
    record(
        e2e_results, "upkeep_1_first_deploy", {"deploy_s": round(result.duration, 1), "backup_s": round(seconds(result, "web-backup"), 2)}
    )


# --------------------------------------------------------------------------- 2. the dump before a migration


def test_2_a_release_dumps_the_database_before_its_migration(upkeep: Upkeep, e2e_results: dict[str, Any]) -> None:
    started = time.monotonic()
    upkeep.psql(ITEMS_SQL)
    written_s = time.monotonic() - started
    before = upkeep.items()
    assert before.startswith(f"{ROWS} ")
    migration = {"web": {"env": {"APP_MIGRATION_SQL": "CREATE TABLE added_by_r2 (note text); INSERT INTO added_by_r2 VALUES ('migrated')"}}}
    result = upkeep.up("r2", overrides=migration)
    upkeep.assert_no_secret_in(result)
    backup, migrate = result.step("web-backup"), result.step("web-migrate")
    assert backup is not None and migrate is not None and backup.ok and migrate.ok
    assert backup.end <= migrate.start, "the migration starts once the dump is complete"
    assert upkeep.psql("SELECT note FROM added_by_r2") == "migrated", "the migration ran"
    dump = upkeep.dump_of("r2")
    assert upkeep.dumps()[0] == dump
    tables = upkeep.dump_tables(dump)
    assert {"items", "schema_migrations", "visits"} <= tables and "added_by_r2" not in tables, tables
    assert upkeep.dump_rows(dump, "items") == ROWS
    size = int(upkeep.in_backups("stat", "-c", "%s", f"/backups/{dump}"))
    assert upkeep.items() == before
    record(
        e2e_results,
        "upkeep_2_dump_before_migration",
        {"rows": ROWS, "rows_written_s": round(written_s, 1), "dump_s": round(backup.end - backup.start, 2), "dump_mb": mb(size),
         "migration_s": round(migrate.end - migrate.start, 2), "deploy_s": round(result.duration, 1)},
    )  # fmt: skip


# --------------------------------------------------------------------------- 3. no dump, no migration


def test_3_a_dump_that_fails_stops_the_release_before_its_migration(upkeep: Upkeep, e2e_results: dict[str, Any]) -> None:
    before = upkeep.stack.outputs
    files = upkeep.files()
    infra.docker("stop", POSTGRES)
    try:
        with pytest.raises(UpdateFailedError) as failure:
            upkeep.up("r2-no-database")
    finally:
        infra.docker("start", POSTGRES)
        infra.wait_healthy(POSTGRES, timeout=60)
    result = failure.value.result
    upkeep.assert_no_secret(str(failure.value))
    upkeep.assert_no_secret_in(result)
    assert [name for name, _ in failure.value.errors] == ["web-backup (command:remote:Command)"], failure.value.errors
    assert "pg_dump: error:" in str(failure.value), str(failure.value)
    assert not result.ran("web-migrate") and not result.ran("switch-traffic")
    assert upkeep.stack.outputs == before and upkeep.files() == files, "no dump, and no partial file left"
    assert get_json(upkeep.url("/health")) == (200, {"status": "ok", "version": upkeep.sha("r2")})
    record(e2e_results, "upkeep_3_failed_dump", {"failed_after_s": round(result.duration, 1)})


# --------------------------------------------------------------------------- 4. a bad migration, and the restore


def test_4_a_bad_migration_fails_and_the_restore_brings_every_row_back(upkeep: Upkeep, e2e_results: dict[str, Any]) -> None:
    before = upkeep.stack.outputs
    rows = upkeep.items()
    assert rows.startswith(f"{ROWS} ")
    bad = {"web": {"env": {"APP_MIGRATION_SQL": "DELETE FROM items WHERE id % 2 = 0; ALTER TABLE items ADD COLUMN oops no_such_type"}}}
    with pytest.raises(UpdateFailedError) as failure:
        upkeep.up("r3", overrides=bad)
    message = str(failure.value)
    upkeep.assert_no_secret(message)
    upkeep.assert_no_secret_in(failure.value.result)
    assert "web-migrate" in message and 'type "no_such_type" does not exist' in message, message
    assert not failure.value.result.ran("switch-traffic")
    assert upkeep.stack.outputs == before
    assert upkeep.psql("SELECT count(*) FROM items") == str(ROWS // 2), "the migration deleted rows before it failed"
    # the old release still serves, through the proxy
    assert get_json(upkeep.url("/health")) == (200, {"status": "ok", "version": upkeep.sha("r2")})
    dump = upkeep.dump_of("r3")
    assert upkeep.dumps()[0] == dump and upkeep.dump_rows(dump, "items") == ROWS, "taken just before, with every row"

    refused = upkeep.ops("restore", "--backup", dump, input="not-the-name\n")
    assert refused.returncode == 1 and "not restored" in refused.stdout
    assert upkeep.psql("SELECT count(*) FROM items") == str(ROWS // 2)
    started = time.monotonic()
    restored = upkeep.ops("restore", "--backup", dump, input="app\n")
    restore_s = time.monotonic() - started
    assert restored.returncode == 0, restored.stderr
    assert f"restored {dump}" in restored.stdout and "before-restore.dump" in restored.stdout
    assert upkeep.items() == rows, "exactly the rows from before the bad migration"
    saved = [n for n in upkeep.dumps() if n.endswith("-before-restore.dump")]
    assert len(saved) == 1 and upkeep.dump_rows(saved[0], "items") == ROWS // 2, "what the database held before the restore"
    assert get_json(upkeep.url("/health")) == (200, {"status": "ok", "version": upkeep.sha("r2")})
    record(
        e2e_results,
        "upkeep_4_bad_migration_and_restore",
        {"rows": ROWS, "dump_s": round(seconds(failure.value.result, "web-backup"), 2), "restore_s": round(restore_s, 1)},
    )


# --------------------------------------------------------------------------- 5. status, logs, backups


def report_rows(report: str) -> dict[str, list[str]]:
    lines = report.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("ROLE"))
    rows = {}
    for line in lines[header + 1 :]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[1]] = cells
    return rows


def test_5_status_logs_and_backups_tell_what_runs(upkeep: Upkeep, e2e_results: dict[str, Any]) -> None:
    release = upkeep.stack.outputs["release"]
    started = time.monotonic()
    status = upkeep.ops("status")
    status_s = time.monotonic() - started
    assert status.returncode == 0, status.stderr
    report = status.stdout
    assert report.splitlines()[0].startswith(f"release: {release['tag']} ("), report
    rows = report_rows(report)
    running = stack_containers()
    assert set(rows) == set(running), (report, running)
    assert {name: cells[3] for name, cells in rows.items()} == running, "each one's health as Docker reports it"
    assert all(cells[2] == "running" for cells in rows.values()), report
    web = [name for name, cells in rows.items() if cells[0] == "web"]
    assert rows[POSTGRES][0] == "postgres" and rows[infra.proxy_container(STACK)][0] == "proxy" and len(web) == 1
    assert rows[f"web-{STACK}-ports"][0] == "ports", "the container that holds the host ports"
    assert f"proxy routes to: {' '.join(live_upstreams())}" in report and live_upstreams() == web == upkeep.stack.outputs["containers"]

    probe = f"/upkeep-probe-{secrets.token_hex(6)}"
    assert get_json(upkeep.url(probe))[0] == 404
    time.sleep(0.5)
    logs = upkeep.ops("logs")
    assert logs.returncode == 0, logs.stderr
    mine = [line for line in logs.stdout.splitlines() if probe in line]
    assert mine and all(line.startswith(f"{web[0]} | ") for line in mine), logs.stdout[-2000:]
    assert '"GET ' + probe + ' HTTP/1.1" 404' in mine[0], mine
    database = upkeep.ops("logs", "--role", "postgres")
    assert database.returncode == 0 and f"{POSTGRES} | " in database.stdout
    assert "database system is ready to accept connections" in database.stdout

    listed = upkeep.ops("backups")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names == upkeep.dumps(), listed.stdout
    assert upkeep.dump_of("r2") in names, "the dump the serving release took"
    record(e2e_results, "upkeep_5_status_logs_backups", {"status_s": round(status_s, 1), "containers": len(rows), "dumps": len(names)})


# --------------------------------------------------------------------------- 6. bounded disk


def test_6_releases_keep_a_bounded_number_of_images_and_a_rollback_needs_no_pull(upkeep: Upkeep, e2e_results: dict[str, Any]) -> None:
    before = app_images(upkeep)
    labels = [f"d{n}" for n in range(1, RELEASES + 1)]
    counts, durations, refs = [], [], {}
    for label in labels:
        # new code in each release, as a real one has: a layer of its own (the build context is a copy of app/)
        code = base64.b64encode(os.urandom(CODE_BYTES)).decode()
        (upkeep.context / "bot.py").write_text(f"{upkeep.code}\n# release {label}: {code}\n")
        result = upkeep.up(label, overrides={"image": {"context": str(upkeep.context)}})
        durations.append(round(result.duration, 1))
        refs[label] = upkeep.stack.outputs["release"]["imageRef"]
        counts.append(len(image_ids(upkeep)))
    after = app_images(upkeep)
    assert max(counts) <= IMAGES_KEPT, counts
    assert len(after) == IMAGES_KEPT
    for label in labels[-IMAGES_KEPT:]:
        assert infra.image_exists(refs[label]), label
    for label in labels[:-IMAGES_KEPT]:
        assert not infra.image_exists(refs[label]), f"{label}'s image is still on the host"
    assert len(upkeep.dumps()) == BACKUPS_KEPT, "the newest dumps only"

    # the registry down: a rollback to the oldest release whose image is kept needs no pull, and goes live
    oldest_kept, removed = labels[-IMAGES_KEPT], labels[-IMAGES_KEPT - 1]
    with upkeep.registry.stopped():
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://{upkeep.registry.address}/v2/", timeout=5)
        result = upkeep.up(labels[-1], rollback_to=str(IMAGES_KEPT - 1))
        assert upkeep.stack.outputs["release"]["tag"] == upkeep.sha(oldest_kept)
        assert get_json(upkeep.url("/health")) == (200, {"status": "ok", "version": upkeep.sha(oldest_kept)})
        # and one to the release just before it, whose image was removed, needs the registry: it fails
        with pytest.raises(UpdateFailedError) as failure:
            upkeep.up(labels[-1], rollback_to=upkeep.sha(removed))
    assert "web-image" in str(failure.value) and "unable to pull image" in str(failure.value), str(failure.value)
    assert upkeep.stack.outputs["release"]["tag"] == upkeep.sha(oldest_kept)
    assert get_json(upkeep.url("/health")) == (200, {"status": "ok", "version": upkeep.sha(oldest_kept)})
    record(
        e2e_results,
        "upkeep_6_bounded_disk",
        {
            "releases": RELEASES, "images_kept": IMAGES_KEPT, "code_per_release_mb": mb(len(code)),
            "images_before": len(before), "images_after": len(after), "most_images_at_once": max(counts),
            "image_mb_before": mb(sum(i["size"] for i in before.values())), "image_mb_after": mb(sum(i["size"] for i in after.values())),
            "unique_mb_before": mb(sum(i["unique"] for i in before.values())), "unique_mb_after": mb(sum(i["unique"] for i in after.values())),
            "release_s_median": sorted(durations)[len(durations) // 2], "rollback_s": round(result.duration, 1),
        },
    )  # fmt: skip
