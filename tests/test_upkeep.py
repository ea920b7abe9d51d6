"""Living with it for years: the backup before each migration, and the images each release prunes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from components.accessories.backups import backup_script, list_backups_script, restore_script
from components.config.load import parse_config
from components.release.housekeeping import kept_images, prune_images_script
from tests.conftest import full_config, prod_config
from tests.harness import ProgramRun, Registration, run_program


def command(run: ProgramRun, name: str) -> Registration:
    return next(r for r in run.registrations if r.name == name)


@pytest.fixture(scope="module")
def full_run() -> ProgramRun:
    raw, secrets = full_config()
    return run_program(raw, secrets, stack="prod")


def test_the_database_is_dumped_before_every_migration(full_run: ProgramRun) -> None:
    backup, migrate = command(full_run, "web-backup"), command(full_run, "web-migrate")
    assert migrate.depends_on(backup), "no migration before its dump exists"
    assert backup.depends_on(next(r for r in full_run.registrations if r.name == "accessories-postgres"))
    script = backup.inputs["create"]
    assert "pg_dump --format=custom --host=postgres --username=app --dbname=app" in script
    assert "-v web-prod-backups:/backups" in script and "--network web-prod-private" in script and "postgres:16" in script
    assert "tail -n +11" in script, "the newest 10 are kept"
    assert backup.inputs["stdin"] == "PGPASSWORD=pg-password-for-tests\n" and "stdin" in backup.secret_inputs
    assert "pg-password" not in script
    image = full_run.one("docker:index/remoteImage:RemoteImage", "web-image").outputs["imageId"]
    assert backup.inputs["triggers"] == [image] and backup.inputs["update"] == ":", "once per new image, like its migration"
    volume = full_run.one("docker:index/volume:Volume", "accessories-backups")
    assert volume.inputs["name"] == "web-prod-backups" and volume.options["retainOnDelete"] is True


def test_no_backup_without_postgres_a_migration_or_kept_dumps() -> None:
    raw, secrets = full_config()
    for change in ({"migrations": {}}, {"postgres": {"enabled": True, "backupsKept": 0}}):
        run = run_program({**raw, **change}, secrets, stack="prod")
        assert not [r for r in run.registrations if r.name in ("web-backup", "accessories-backups")]
    rollback_env = {"CUTOVER_ROLLBACK_TO": "previous"}
    del rollback_env  # (a rollback runs no migration, so no dump: tests/test_releases.py covers the migration)


def test_the_scripts_keep_the_password_out_and_refuse_odd_names() -> None:
    raw, secrets = full_config()
    cfg = parse_config(raw, secrets, "prod", "a" * 40)
    assert "before-restore" in restore_script(cfg.identity, cfg.postgres, "web-prod-private", "20261129T010203Z-aaaaaaaaaaaa.dump")
    for bad in ("../etc/passwd", "x.sql", "a b.dump", "-rf.dump"):
        with pytest.raises(ValueError, match="expected the name of a dump"):
            restore_script(cfg.identity, cfg.postgres, "web-prod-private", bad)
    for script in (
        backup_script(cfg.identity, cfg.postgres, "net", "v1"),
        list_backups_script(cfg.identity, cfg.postgres),
        restore_script(cfg.identity, cfg.postgres, "net", "x.dump"),
    ):
        assert "pg-password" not in script


# The scripts as the server runs them, with stand-ins: `docker run` runs the command it is given here (the backups
# volume a folder, the env file from stdin), `pg_dump` writes its --file or, with FAIL set, fails as the real one does
# once it has created its output file, `pg_restore` records that it ran.
DOCKER_RUN = r"""#!/usr/bin/env python3
import os, subprocess, sys
args, env = sys.argv[1:], dict(os.environ)
if "--env-file" in args:
    env.update(line.split("=", 1) for line in sys.stdin.read().splitlines() if "=" in line)
sys.exit(subprocess.run(["sh", "-c", args[-1].replace("/backups", os.environ["BACKUPS"])], env=env, check=False).returncode)
"""
PG_DUMP = """#!/bin/sh
for a in "$@"; do case "$a" in --file=*) file="${a#--file=}" ;; esac; done
[ -n "$PGPASSWORD" ] || { echo "pg_dump: no password" >&2; exit 1; }
if [ -n "${FAIL:-}" ]; then : > "$file"; echo 'pg_dump: error: connection to server at "postgres" failed' >&2; exit 1; fi
echo dump > "$file"
"""


def run_script(tmp_path: Path, script: str, *, fail: bool = False) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir, backups = tmp_path / "bin", tmp_path / "backups"
    bin_dir.mkdir(exist_ok=True)
    backups.mkdir(exist_ok=True)
    for name, text in (("docker", DOCKER_RUN), ("pg_dump", PG_DUMP), ("pg_restore", f'#!/bin/sh\necho "$@" >> {tmp_path}/restored\n')):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "BACKUPS": str(backups), **({"FAIL": "1"} if fail else {})}
    done = subprocess.run(["/bin/sh", "-c", script], input="PGPASSWORD=pw\n", capture_output=True, text=True, env=env, check=False)
    return done, sorted(p.name for p in backups.iterdir())


def test_a_dump_that_fails_fails_the_step_and_leaves_no_file(tmp_path: Path) -> None:
    raw, secrets = full_config()
    cfg = parse_config(raw, secrets, "prod", "a" * 40)
    done, files = run_script(tmp_path, backup_script(cfg.identity, cfg.postgres, "net", "0123456789abcdef"), fail=True)
    assert done.returncode != 0, "no migration may run without its dump"
    assert "pg_dump: error" in done.stderr and files == []
    done, files = run_script(tmp_path, backup_script(cfg.identity, cfg.postgres, "net", "0123456789abcdef"))
    assert done.returncode == 0, done.stderr
    assert len(files) == 1 and files[0].endswith("-0123456789ab.dump"), files


def test_the_newest_dumps_are_kept(tmp_path: Path) -> None:
    raw, secrets = full_config()
    cfg = parse_config({**raw, "postgres": {"enabled": True, "backupsKept": 2}}, secrets, "prod", "a" * 40)
    (tmp_path / "backups").mkdir()
    for age, name in enumerate(["c.dump", "b.dump", "a.dump"], 1):
        (tmp_path / "backups" / name).write_text("old")
        os.utime(tmp_path / "backups" / name, (time.time() - 100 * age, time.time() - 100 * age))
    done, files = run_script(tmp_path, backup_script(cfg.identity, cfg.postgres, "net", "v1"))
    assert done.returncode == 0, done.stderr
    assert len(files) == 2 and "c.dump" in files and any(f.endswith("-v1.dump") for f in files), files


def test_no_restore_without_a_dump_of_what_is_there_now(tmp_path: Path) -> None:
    raw, secrets = full_config()
    cfg = parse_config(raw, secrets, "prod", "a" * 40)
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "20261129T010203Z-0123456789ab.dump").write_text("dump")
    script = restore_script(cfg.identity, cfg.postgres, "net", "20261129T010203Z-0123456789ab.dump")
    done, files = run_script(tmp_path, script, fail=True)
    assert done.returncode != 0 and not (tmp_path / "restored").exists(), "nothing restored over a database not saved first"
    assert files == ["20261129T010203Z-0123456789ab.dump"]
    done, files = run_script(tmp_path, script)
    assert done.returncode == 0 and "restored 20261129T010203Z-0123456789ab.dump" in done.stdout, done.stderr
    assert (tmp_path / "restored").read_text().split()[-1].endswith("/20261129T010203Z-0123456789ab.dump")
    assert len(files) == 2 and any(f.endswith("-before-restore.dump") for f in files), files


def test_each_release_keeps_its_image_and_the_newest_before_it(full_run: ProgramRun) -> None:
    prune = command(full_run, "housekeeping-prune-images")
    assert prune.depends_on(command(full_run, "switch-traffic")), "only once the release is live"
    current = full_run.outputs["release"]["imageRef"]
    assert prune.inputs["triggers"] == [[current]]
    history = [{"imageRef": f"ghcr.io/acme/web@sha256:{n:064x}"} for n in range(1, 9)]
    kept = kept_images({"imageRef": "ghcr.io/acme/web@sha256:" + "f" * 64}, history, 5)
    assert kept == ["ghcr.io/acme/web@sha256:" + "f" * 64, *(h["imageRef"] for h in history[:4])]


# A stand-in `docker` for the prune script: an image store kept in a JSON file, with Docker's rules for
# `docker images REPO --digests` (a row per tag, or one `<none>` row when only a digest names the image) and for
# `docker rmi` without force (moby daemon/images/image_delete.go): a name is taken off the image, which goes
# once no name is left (the last one not while a container uses it); an ID removes the image with all its names, unless a container uses it or the names
# are more than one tag or span repositories.
FAKE_DOCKER = r"""#!/usr/bin/env python3
import json, sys
path = sys.argv[0] + ".json"
store = json.load(open(path))
args = sys.argv[1:]
def repo(name):
    return name.split("@")[0].rsplit(":", 1)[0] if "@" not in name else name.split("@")[0]
if args[0] == "images":
    want, form = args[-1], args[args.index("--format") + 1]
    for iid, img in store.items():
        digests = [d.split("@")[1] for d in img["names"] if "@" in d and repo(d) == want]
        tags = [t.rsplit(":", 1)[1] for t in img["names"] if "@" not in t and repo(t) == want]
        for tag in tags or (["<none>"] if digests else []):
            fields = {"Repository": want, "Tag": tag, "Digest": digests[0] if digests else "<none>", "ID": iid}
            print("".join(fields.get(part, part) for part in form.replace("{{.", "\\0").replace("}}", "\\0").split("\\0")))
    sys.exit(0)
if args[0] == "rmi":
    ref = args[1]
    with open(path + ".log", "a") as log:
        log.write(ref + "\n")
    if ref in store:
        img = store[ref]
        tags = [n for n in img["names"] if "@" not in n]
        if img["in_use"] or len(tags) > 1 or len({repo(n) for n in img["names"]}) > 1:
            sys.exit(1)
        del store[ref]
    else:
        owner = next((i for i, img in store.items() if ref in img["names"]), None)
        if owner is None or (store[owner]["in_use"] and store[owner]["names"] == [ref]):
            sys.exit(1)
        store[owner]["names"].remove(ref)
        if not store[owner]["names"]:
            del store[owner]
    json.dump(store, open(path, "w"))
    sys.exit(0)
sys.exit(2)
"""


def run_prune(
    tmp_path: Path, images: dict[str, dict[str, Any]], keep: list[str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    raw, secrets = full_config()
    cfg = parse_config(raw, secrets, "prod", "a" * 40)
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    state = tmp_path / "docker.json"
    state.write_text(json.dumps(images))
    done = subprocess.run(
        ["/bin/sh", "-c", prune_images_script(cfg.image.repository, keep)],
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done, json.loads(state.read_text())


def image(n: str, *names: str, in_use: bool = False) -> tuple[str, dict[str, Any]]:
    return f"sha256:{n * 64}", {"names": list(names), "in_use": in_use}


def test_the_prune_script_removes_only_what_is_not_kept(tmp_path: Path) -> None:
    repo = "ghcr.io/acme/web"
    images = dict(
        [
            image("a", f"{repo}@sha256:{'1' * 64}"),  # pulled by digest, kept by digest
            image("c", f"{repo}@sha256:{'2' * 64}"),  # pulled by digest: removed
            image("b", f"{repo}:dev1"),  # a dev build, kept by ID
            image("d", f"{repo}:dev2"),  # a dev build, removed by ID
            image("e", f"{repo}@sha256:{'3' * 64}", in_use=True),  # in use: docker refuses, the script goes on
            image("f", "postgres:16"),  # another repository: never listed
        ]
    )
    done, left = run_prune(tmp_path, images, [f"{repo}@sha256:{'1' * 64}", f"sha256:{'b' * 64}"])
    assert sorted(left) == [f"sha256:{n * 64}" for n in "abef"]
    assert "kept 2 image(s) of ghcr.io/acme/web; removed 2" in done.stdout


def test_the_prune_script_removes_an_image_built_on_the_server_tag_and_all(tmp_path: Path) -> None:
    """Where the server also builds, an image has its tag besides its digest: taking the digest off is not enough."""
    repo = "ghcr.io/acme/web"
    images = dict(
        [
            image(str(n), f"{repo}:{n}{'0' * 39}", f"{repo}@sha256:{'0' * 63}{n}", in_use=n == 1)
            for n in range(1, 7)  # release 1 still runs (a failed release's container, say)
        ]
    )
    done, left = run_prune(tmp_path, images, [f"{repo}@sha256:{'0' * 63}{n}" for n in "654"])
    assert sorted(left) == [f"sha256:{n * 64}" for n in "1456"], done.stdout
    assert "removed 2" in done.stdout
    assert (tmp_path / "docker.json.log").read_text().split() == [f"sha256:{n * 64}" for n in "123"], "by ID, each image once"


def test_the_build_cache_is_bounded_where_the_image_is_built_only_when_asked(full_run: ProgramRun) -> None:
    """`docker builder prune` trims the whole BuildKit cache of the machine running pulumi: never by default."""
    assert not [r for r in run_program(*prod_config(), stack="prod").registrations if r.name == "app-build-cache"]
    run = full_run  # image.buildCacheKept: 10g
    cache = command(run, "app-build-cache")
    # a local Command runs `create` on `pulumi up` only, never in a preview (components/release/image.py cites the provider)
    assert cache.type == "command:local:Command" and cache.inputs["create"] == "docker builder prune --force --keep-storage 10240mb"
    assert not {"update", "delete"} & set(cache.inputs)
    assert cache.depends_on(run.one("docker:index/image:Image", "app-build"))
