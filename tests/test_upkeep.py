"""Living with it for years: the backup before each migration, and the images each release prunes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.backups import backup_script, list_backups_script, restore_script
from components.config import parse_config
from components.housekeeping import kept_images, prune_images_script
from tests.conftest import full_config
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
    assert "before-restore" in restore_script(cfg, "web-prod-private", "20261129T010203Z-aaaaaaaaaaaa.dump")
    for bad in ("../etc/passwd", "x.sql", "a b.dump", "-rf.dump"):
        with pytest.raises(ValueError, match="expected the name of a dump"):
            restore_script(cfg, "web-prod-private", bad)
    for script in (backup_script(cfg, "net", "v1"), list_backups_script(cfg), restore_script(cfg, "net", "x.dump")):
        assert "pg-password" not in script


def test_each_release_keeps_its_image_and_the_newest_before_it(full_run: ProgramRun) -> None:
    prune = command(full_run, "housekeeping-prune-images")
    assert prune.depends_on(command(full_run, "switch-traffic")), "only once the release is live"
    current = full_run.outputs["release"]["imageRef"]
    assert prune.inputs["triggers"] == [[current]]
    history = [{"imageRef": f"ghcr.io/acme/web@sha256:{n:064x}"} for n in range(1, 9)]
    kept = kept_images({"imageRef": "ghcr.io/acme/web@sha256:" + "f" * 64}, history, 5)
    assert kept == ["ghcr.io/acme/web@sha256:" + "f" * 64, *(h["imageRef"] for h in history[:4])]


def test_the_prune_script_removes_only_what_is_not_kept(tmp_path: Path) -> None:
    """Run against a stand-in `docker` that lists images and records what it is asked to remove."""
    raw, secrets = full_config()
    cfg = parse_config(raw, secrets, "prod", "a" * 40)
    keep = [f"ghcr.io/acme/web@sha256:{'1' * 64}", f"sha256:{'b' * 64}"]
    listing = "\\n".join(
        [
            f"ghcr.io/acme/web@sha256:{'1' * 64}=sha256:{'a' * 64}",  # kept by digest
            f"ghcr.io/acme/web@sha256:{'2' * 64}=sha256:{'c' * 64}",  # removed
            f"ghcr.io/acme/web@<none>=sha256:{'b' * 64}",  # a dev build, kept by ID
            f"ghcr.io/acme/web@<none>=sha256:{'d' * 64}",  # a dev build, removed by ID
            f"ghcr.io/acme/web@sha256:{'3' * 64}=sha256:{'e' * 64}",  # in use: docker refuses, the script goes on
        ]
    )
    removed = tmp_path / "removed"
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = images ]; then printf "{listing}\\n"; exit 0; fi\n'
        f'if [ "$1" = rmi ]; then case "$2" in *3333*) exit 1 ;; esac; echo "$2" >> {removed}; exit 0; fi\n'
        "exit 2\n"
    )
    docker.chmod(0o755)
    done = subprocess.run(
        ["/bin/sh", "-c", prune_images_script(cfg, keep)],
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert removed.read_text().split() == [f"ghcr.io/acme/web@sha256:{'2' * 64}", f"sha256:{'d' * 64}"]
    assert "kept 2 image(s) of ghcr.io/acme/web; removed 2" in done.stdout


def test_the_build_cache_is_bounded_where_the_image_is_built(full_run: ProgramRun) -> None:
    cache = command(full_run, "app-build-cache")
    assert cache.type == "command:local:Command" and cache.inputs["create"] == "docker builder prune --force --keep-storage 10240mb"
    assert cache.depends_on(full_run.one("docker:index/image:Image", "app-build"))
    raw, secrets = full_config()
    off: dict[str, Any] = {**raw, "image": {**raw["image"], "buildCacheKept": "0"}}
    assert not [r for r in run_program(off, secrets, stack="prod").registrations if r.name == "app-build-cache"]
