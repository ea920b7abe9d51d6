"""components/ops.py: the stack's config as `pulumi config --json --show-secrets` prints it, the
scripts run on the server (run here by sh with a stand-in `docker`), and the reports made of what
they print. The same commands against a real server over ssh: tests/e2e/test_upkeep.py."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from components import ops
from components.backups import restore_script
from components.config import ConfigError
from tests.conftest import SSH_KEY

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def cli_json(**values: Any) -> str:
    """`pulumi config --json --show-secrets`: objects as JSON text plus `objectValue` (pulumi/pulumi
    pkg/cmd/pulumi/config/config.go configValueJSON and listConfig)."""
    out: dict[str, Any] = {"aws:region": {"value": "eu-west-1", "secret": False}}
    for key, value in values.items():
        secret = key in ("postgresPassword", "sshPrivateKey")
        entry: dict[str, Any] = {"value": json.dumps(value) if isinstance(value, dict) else str(value), "secret": secret}
        if isinstance(value, dict):
            entry["objectValue"] = value
        out[f"cutover:{key}"] = entry
    return json.dumps(out, indent=2)


LOCAL = {"appName": "shop", "image": {"repository": "ghcr.io/acme/shop", "push": False}, "postgres": {"enabled": True}}


def test_the_cli_json_reads_into_the_programs_model() -> None:
    cfg = ops.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="pw-for-tests"), "dev")
    assert cfg.app_name == "shop" and cfg.stack == "dev" and cfg.postgres.enabled
    assert cfg.postgres.password is not None and cfg.postgres.password.reveal() == "pw-for-tests"
    assert "pw-for-tests" not in repr(cfg)


def test_a_bad_value_in_the_stack_is_named() -> None:
    with pytest.raises(ConfigError, match=r'cutover:appName = "Shop!": expected a lowercase name'):
        ops.config_from_pulumi_json(cli_json(**{**LOCAL, "appName": "Shop!"}, postgresPassword="x"), "dev")


def test_host_argv_reaches_the_server_the_way_the_provider_does() -> None:
    known = "[203.0.113.10]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbWvvJ1nFOkbK1ZkTVe/6lHo0r7rD7mCV8SPl5ZUSN6"
    remote = {**LOCAL, "host": {"url": "ssh://deploy@203.0.113.10:2222", "knownHosts": known}}
    cfg = ops.config_from_pulumi_json(cli_json(**remote, postgresPassword="x", sshPrivateKey=SSH_KEY), "prod")
    argv = ops.host_argv(cfg, "docker ps")
    assert argv[0] == "ssh" and argv[-3:] == ["--", "203.0.113.10", "docker ps"]
    assert argv[argv.index("-l") + 1] == "deploy" and argv[argv.index("-p") + 1] == "2222"
    assert any("StrictHostKeyChecking=yes" in a for a in argv)
    local = ops.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="x"), "dev")
    assert ops.host_argv(local, "docker ps") == ["/bin/sh", "-c", "docker ps"]


def container(name: str, role: str, health: str | None, restarts: int = 0) -> dict[str, Any]:
    state: dict[str, Any] = {"Status": "running", "Running": True, "StartedAt": "2026-11-29T09:30:00.123456789Z"}
    if health:
        state["Health"] = {"Status": health}
    return {
        "Name": f"/{name}",
        "Image": "sha256:" + "ab" * 32,
        "RestartCount": restarts,
        "State": state,
        "Config": {"Labels": {"cutover.role": role}},
    }


STATUS_OUTPUT = "\n".join(
    [
        "### containers",
        # one JSON object per container: `docker inspect --format` with ops.CONTAINER_FORMAT
        json.dumps(container("shop-dev-web-2", "web", "healthy")),
        json.dumps(container("shop-dev-postgres", "postgres", "healthy", 1)),
        "### upstreams",
        "shop-dev-web-2:8000",
        "shop-dev-web-1:8000",
        "### disk",
        json.dumps({"Type": "Images", "TotalCount": "7", "Size": "1.2GB", "Reclaimable": "300MB (25%)"}),
        "### docker",
        "27.5.1",
    ]
)


def test_the_status_report_names_what_runs() -> None:
    release = {
        "tag": "0123456789ab",
        "imageRef": "ghcr.io/acme/shop@sha256:" + "cd" * 32,
        "deployedAt": "2026-11-29T09:29:00Z",
        "source": "build",
    }
    report = ops.status_report(STATUS_OUTPUT, release, NOW)
    lines = report.splitlines()
    assert lines[0] == f"release: 0123456789ab (sha256:{'cd' * 6}…), deployed 2026-11-29T09:29:00Z (build)"
    assert lines[2].split() == ["ROLE", "CONTAINER", "STATE", "HEALTH", "UP", "RESTARTS", "IMAGE"]
    assert lines[3].split() == ["postgres", "shop-dev-postgres", "running", "healthy", "2h", "1", "sha256:" + "ab" * 6]
    assert lines[4].split()[:5] == ["web", "shop-dev-web-2", "running", "healthy", "2h"]
    assert "proxy routes to: shop-dev-web-2:8000 shop-dev-web-1:8000" in report
    assert "  Images: 7 (1.2GB, 300MB (25%) reclaimable)" in report and report.endswith("docker: 27.5.1")


def test_the_status_report_without_a_release_or_containers() -> None:
    report = ops.status_report("### containers\n### upstreams\n### disk\n### docker\n27.5.1", None, NOW)
    assert report.startswith("release: none recorded") and "proxy routes to: (no proxy)" in report


def test_status_reads_no_container_environment() -> None:
    """`docker inspect` would print each container's environment: the accessories' passwords and secretEnv."""
    script = ops.status_script(ops.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="x"), "dev"))
    assert f"docker inspect --format '{ops.CONTAINER_FORMAT}'" in script
    assert "Env" not in script and "docker inspect $ids" not in script
    assert "--filter label=cutover.app=shop --filter label=cutover.stack=dev" in script


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_logs_prefix_each_line_with_its_container(tmp_path: Path) -> None:
    cfg = ops.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="x"), "dev")
    stand_in(
        tmp_path / "bin",
        "docker",
        'case "$1" in ps) echo "$@" > "$(dirname "$0")/ps-args"; printf "shop-dev-worker-1\\nshop-dev-worker-2\\n" ;;'
        ' logs) for a; do n="$a"; done; echo "line from $n"; echo "error from $n" >&2 ;; esac\n',
    )
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    done = subprocess.run(
        ["/bin/sh", "-c", ops.logs_script(cfg, "worker", follow=False)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == [
        "shop-dev-worker-1 | error from shop-dev-worker-1",
        "shop-dev-worker-1 | line from shop-dev-worker-1",
        "shop-dev-worker-2 | error from shop-dev-worker-2",
        "shop-dev-worker-2 | line from shop-dev-worker-2",
    ]
    assert "label=cutover.role=worker" in (tmp_path / "bin" / "ps-args").read_text()


def test_logs_of_a_role_with_nothing_running_say_so(tmp_path: Path) -> None:
    cfg = ops.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="x"), "dev")
    stand_in(tmp_path / "bin", "docker", "exit 0\n")
    done = subprocess.run(
        ["/bin/sh", "-c", ops.logs_script(cfg, "bot", follow=True)],
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path / 'bin'}:/bin"},
        check=False,
    )
    assert done.returncode == 1 and done.stderr.strip() == "no running container of role bot"


def test_backups_report() -> None:
    listed = "20261129T101010Z-0123456789ab.dump 12345678 2026-11-29T10:10:12Z\n20261128T101010Z-before-restore.dump 1000000 2026-11-28T10:10:11Z\n"
    assert ops.backups_report(listed).splitlines() == [
        "20261129T101010Z-0123456789ab.dump        12.3 MB  2026-11-29T10:10:12Z",
        "20261128T101010Z-before-restore.dump       1.0 MB  2026-11-28T10:10:11Z",
    ]
    assert ops.backups_report("") == "no dump on the server yet (one is taken before each migration)"


@pytest.mark.parametrize("name", ["../etc/passwd.dump", "a;rm -rf x.dump", "x.sql", ".dump", "a/b.dump"])
def test_restore_refuses_a_name_that_is_not_a_dump(name: str) -> None:
    cfg = ops.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="x"), "dev")
    with pytest.raises(ValueError, match="expected the name of a dump as `make backups` lists it"):
        restore_script(cfg, "shop-dev-private", name)


# --------------------------------------------------------------------------- the command line, with a stand-in pulumi


def cli(tmp_path: Path, config: str, docker_body: str = "exit 0\n") -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    (tmp_path / "config.json").write_text(config)
    stand_in(
        bin_dir,
        "pulumi",
        f'echo "$@" >> "{tmp_path}/pulumi-calls"\n'
        f'case "$1" in config) cat "{tmp_path}/config.json" ;; stack) echo \'{{"tag": "t1", "imageRef": "sha256:{"ef" * 32}"}}\' ;; esac\n',
    )
    stand_in(bin_dir, "docker", docker_body)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_status_of_a_local_stack_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    env = cli(tmp_path, cli_json(**LOCAL, postgresPassword="pw-for-tests"), '[ "$1" = version ] && echo 27.5.1; exit 0\n')
    monkeypatch.setattr(ops, "load_deploy_key", lambda host, environ: None)
    monkeypatch.setenv("PATH", env["PATH"])
    assert ops.main(["status", "--stack", "dev"], env=env) == 0
    out = capsys.readouterr().out
    assert out.startswith("release: t1 (sha256:efefefefefef…)") and "docker: 27.5.1" in out
    calls = (tmp_path / "pulumi-calls").read_text().splitlines()
    assert calls == ["config --json --show-secrets --stack dev", "stack output release --json --stack dev"]
    assert "pw-for-tests" not in out


def test_restore_asks_for_the_database_name_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = cli(tmp_path, cli_json(**LOCAL, postgresPassword="pw-for-tests"), f'echo "docker $@" >> "{tmp_path}/docker-calls"\n')
    monkeypatch.setattr(ops, "load_deploy_key", lambda host, environ: None)
    monkeypatch.setattr("builtins.input", lambda prompt: "not-the-name")
    assert ops.main(["restore", "--stack", "dev", "--backup", "20261129T101010Z-0123456789ab.dump"], env=env) == 1
    assert "not restored" in capsys.readouterr().out
    assert not (tmp_path / "docker-calls").exists(), "nothing ran on the server"


def test_restore_without_a_backup_name_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = cli(tmp_path, cli_json(**LOCAL, postgresPassword="x"))
    monkeypatch.setattr(ops, "load_deploy_key", lambda host, environ: None)
    assert ops.main(["restore", "--stack", "dev"], env=env) == 1
    assert capsys.readouterr().err.strip() == "cutover: BACKUP=<name> is missing: `make backups` lists the names"


def test_backups_of_a_stack_without_postgres(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    env = cli(tmp_path, cli_json(**{**LOCAL, "postgres": {"enabled": False}}))
    monkeypatch.setattr(ops, "load_deploy_key", lambda host, environ: None)
    assert ops.main(["backups", "--stack", "dev"], env=env) == 1
    assert capsys.readouterr().err.strip() == "cutover: stack dev has no PostgreSQL accessory (postgres.enabled), so no dumps"


def test_without_the_pulumi_cli_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ops.main(["status", "--stack", "dev"], env={"PATH": str(tmp_path)}) == 1
    assert capsys.readouterr().err.strip() == "cutover: the pulumi CLI is not installed (https://www.pulumi.com/docs/install/)"


def test_a_renamed_project_reads_its_own_keys_and_names_them_in_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pulumi.yaml `name: shop`: `pulumi config` prints shop:* keys, and a bad one is named shop:..."""
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: shop\nruntime: python\n")
    monkeypatch.chdir(project / "sub")  # the pulumi CLI finds the project upwards from here, so does this
    monkeypatch.setattr(ops, "load_deploy_key", lambda host, environ: None)
    config = cli_json(**{**LOCAL, "appName": "Shop!"}, postgresPassword="pw-for-tests").replace('"cutover:', '"shop:')
    assert ops.main(["backups", "--stack", "dev"], env=cli(tmp_path, config)) == 1
    err = capsys.readouterr().err
    assert 'shop:appName = "Shop!": expected a lowercase name' in err and "cutover:appName" not in err
    assert "pw-for-tests" not in err
    # the same stack under the old name holds none of the project's keys: each is missing, named shop:
    assert ops.main(["backups", "--stack", "dev"], env=cli(tmp_path, cli_json(**LOCAL, postgresPassword="x"))) == 1
    assert "shop:appName is missing" in capsys.readouterr().err
    # and its own keys read
    good = cli_json(**LOCAL, postgresPassword="x").replace('"cutover:', '"shop:')
    cfg = ops.config_from_pulumi_json(good, "dev", "shop")
    assert cfg.app_name == "shop" and cfg.postgres.enabled and cfg.postgres.password is not None


def test_no_project_file_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert ops.main(["status", "--stack", "dev"], env=cli(tmp_path, cli_json(**LOCAL))) == 1
    assert (
        capsys.readouterr().err.strip().startswith(f"cutover: no Pulumi.yaml project file in {tmp_path.resolve()} or any folder above it")
    )
