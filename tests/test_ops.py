"""components/ops/: the stack's config as `pulumi config --json --show-secrets` prints it, the
scripts run on the server (run here by sh with a stand-in `docker`), and the reports made of what
they print. The same commands against a real server over ssh: tests/e2e/test_upkeep.py."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from components.accessories.backups import restore_script
from components.config.model import ConfigError, Secret, StackConfig
from components.ops import backups as ops_backups
from components.ops import cli as ops_cli
from components.ops import containers as ops_containers
from components.ops import logs as ops_logs
from components.ops import remote as ops_remote
from components.ops import status as ops_status
from tests.conftest import SSH_KEY

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def cli_json(**values: Any) -> str:
    """`pulumi config --json --show-secrets`: objects as JSON text plus `objectValue` (pulumi/pulumi
    pkg/cmd/pulumi/config/config.go configValueJSON and listConfig)."""
    out: dict[str, Any] = {"aws:region": {"value": "eu-west-1", "secret": False}}
    for key, value in values.items():
        secret = key in ("postgresPassword", "sshPrivateKey", "secretEnv")
        entry: dict[str, Any] = {"value": json.dumps(value) if isinstance(value, dict) else str(value), "secret": secret}
        if isinstance(value, dict):
            entry["objectValue"] = value
        out[f"cutover:{key}"] = entry
    return json.dumps(out, indent=2)


LOCAL = {"appName": "shop", "image": {"repository": "ghcr.io/acme/shop", "push": False}, "postgres": {"enabled": True}}


def test_the_cli_json_reads_into_the_programs_model() -> None:
    cfg = ops_remote.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="pw-for-tests"), "dev")
    assert cfg.app_name == "shop" and cfg.stack == "dev" and cfg.postgres.enabled
    assert cfg.postgres.password is not None and cfg.postgres.password.reveal() == "pw-for-tests"
    assert "pw-for-tests" not in repr(cfg)


def test_a_bad_value_in_the_stack_is_named() -> None:
    with pytest.raises(ConfigError, match=r'cutover:appName = "Shop!": expected a lowercase name'):
        ops_remote.config_from_pulumi_json(cli_json(**{**LOCAL, "appName": "Shop!"}, postgresPassword="x"), "dev")


def test_host_argv_reaches_the_server_the_way_the_provider_does() -> None:
    known = "[203.0.113.10]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbWvvJ1nFOkbK1ZkTVe/6lHo0r7rD7mCV8SPl5ZUSN6"
    remote = {**LOCAL, "host": {"url": "ssh://deploy@203.0.113.10:2222", "knownHosts": known}}
    cfg = ops_remote.config_from_pulumi_json(cli_json(**remote, postgresPassword="x", sshPrivateKey=SSH_KEY), "prod")
    argv = ops_remote.host_argv(cfg, "docker ps")
    assert argv[0] == "ssh" and argv[-3:] == ["--", "203.0.113.10", "docker ps"]
    assert argv[argv.index("-l") + 1] == "deploy" and argv[argv.index("-p") + 1] == "2222"
    assert any("StrictHostKeyChecking=yes" in a for a in argv)
    local = ops_remote.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="x"), "dev")
    assert ops_remote.host_argv(local, "docker ps") == ["/bin/sh", "-c", "docker ps"]


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
        # one JSON object per container: `docker inspect --format` with ops_status.CONTAINER_FORMAT
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
    report = ops_status.status_report(STATUS_OUTPUT, release, NOW)
    lines = report.splitlines()
    assert lines[0] == f"release: 0123456789ab (sha256:{'cd' * 6}…), deployed 2026-11-29T09:29:00Z (build)"
    assert lines[2].split() == ["ROLE", "CONTAINER", "STATE", "HEALTH", "UP", "RESTARTS", "IMAGE"]
    assert lines[3].split() == ["postgres", "shop-dev-postgres", "running", "healthy", "2h", "1", "sha256:" + "ab" * 6]
    assert lines[4].split()[:5] == ["web", "shop-dev-web-2", "running", "healthy", "2h"]
    assert "proxy routes to: shop-dev-web-2:8000 shop-dev-web-1:8000" in report
    assert "  Images: 7 (1.2GB, 300MB (25%) reclaimable)" in report and report.endswith("docker: 27.5.1")


@pytest.mark.parametrize(
    ("shown", "ending"),
    [
        ("true", "docker: 27.5.1, live-restore on"),
        (
            "false",
            'docker: 27.5.1; live-restore is off: a restart or upgrade of the engine stops every container; put {"live-restore": true} in /etc/docker/daemon.json (README: live-restore)',
        ),
        ("", "docker: 27.5.1"),
    ],
)
def test_the_status_report_says_when_an_engine_restart_would_stop_the_containers(shown: str, ending: str) -> None:
    report = ops_status.status_report(f"### containers\n### upstreams\n### disk\n### docker\n27.5.1\n### live-restore\n{shown}", None, NOW)
    assert report.endswith(ending)


def test_the_status_script_asks_the_engine_about_live_restore() -> None:
    script = ops_status.status_script(ops_remote.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="x"), "dev"))
    assert "echo '### live-restore'\ndocker info --format '{{.LiveRestoreEnabled}}'" in script


def test_the_status_report_without_a_release_or_containers() -> None:
    report = ops_status.status_report("### containers\n### upstreams\n### disk\n### docker\n27.5.1", None, NOW)
    assert report.startswith("release: none recorded") and "proxy routes to: (no proxy)" in report


def test_status_reads_no_container_environment() -> None:
    """`docker inspect` would print each container's environment: the accessories' passwords and secretEnv."""
    script = ops_status.status_script(ops_remote.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="x"), "dev"))
    assert f"docker inspect --format '{ops_status.CONTAINER_FORMAT}'" in script
    assert "Env" not in script and "docker inspect $ids" not in script
    assert "--filter label=cutover.app=shop --filter label=cutover.stack=dev" in script


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_logs_prefix_each_line_with_its_container(tmp_path: Path) -> None:
    cfg = ops_remote.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="x"), "dev")
    stand_in(
        tmp_path / "bin",
        "docker",
        'case "$1" in ps) echo "$@" > "$(dirname "$0")/ps-args"; printf "shop-dev-worker-1\\nshop-dev-worker-2\\n" ;;'
        ' logs) for a; do n="$a"; done; echo "line from $n"; echo "error from $n" >&2 ;; esac\n',
    )
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    done = subprocess.run(
        ["/bin/sh", "-c", ops_logs.logs_script(cfg, "worker", follow=False)], capture_output=True, text=True, env=env, check=False
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
    cfg = ops_remote.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="x"), "dev")
    stand_in(tmp_path / "bin", "docker", "exit 0\n")
    done = subprocess.run(
        ["/bin/sh", "-c", ops_logs.logs_script(cfg, "bot", follow=True)],
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path / 'bin'}:/bin"},
        check=False,
    )
    assert done.returncode == 1 and done.stderr.strip() == "no running container of role bot"


def test_backups_report() -> None:
    listed = "20261129T101010Z-0123456789ab.dump 12345678 2026-11-29T10:10:12Z\n20261128T101010Z-before-restore.dump 1000000 2026-11-28T10:10:11Z\n"
    assert ops_backups.backups_report(listed).splitlines() == [
        "20261129T101010Z-0123456789ab.dump        12.3 MB  2026-11-29T10:10:12Z",
        "20261128T101010Z-before-restore.dump       1.0 MB  2026-11-28T10:10:11Z",
    ]
    assert ops_backups.backups_report("") == "no dump on the server yet (one is taken before each migration)"


@pytest.mark.parametrize("name", ["../etc/passwd.dump", "a;rm -rf x.dump", "x.sql", ".dump", "a/b.dump"])
def test_restore_refuses_a_name_that_is_not_a_dump(name: str) -> None:
    cfg = ops_remote.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="x"), "dev")
    with pytest.raises(ValueError, match="expected the name of a dump as `make backups` lists it"):
        restore_script(cfg.identity, cfg.postgres, "shop-dev-private", name)


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
    monkeypatch.setattr(ops_cli, "load_deploy_key", lambda host, environ: None)
    monkeypatch.setenv("PATH", env["PATH"])
    assert ops_cli.main(["status", "--stack", "dev"], env=env) == 0
    out = capsys.readouterr().out
    assert out.startswith("release: t1 (sha256:efefefefefef…)") and "docker: 27.5.1" in out
    calls = (tmp_path / "pulumi-calls").read_text().splitlines()
    assert calls == ["config --json --show-secrets --stack dev", "stack output release --json --stack dev"]
    assert "pw-for-tests" not in out


def test_restore_asks_for_the_database_name_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = cli(tmp_path, cli_json(**LOCAL, postgresPassword="pw-for-tests"), f'echo "docker $@" >> "{tmp_path}/docker-calls"\n')
    monkeypatch.setattr(ops_cli, "load_deploy_key", lambda host, environ: None)
    monkeypatch.setattr("builtins.input", lambda prompt: "not-the-name")
    assert ops_cli.main(["restore", "--stack", "dev", "--backup", "20261129T101010Z-0123456789ab.dump"], env=env) == 1
    assert "not restored" in capsys.readouterr().out
    assert not (tmp_path / "docker-calls").exists(), "nothing ran on the server"


def test_restore_without_a_backup_name_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = cli(tmp_path, cli_json(**LOCAL, postgresPassword="x"))
    monkeypatch.setattr(ops_cli, "load_deploy_key", lambda host, environ: None)
    assert ops_cli.main(["restore", "--stack", "dev"], env=env) == 1
    assert capsys.readouterr().err.strip() == "cutover: BACKUP=<name> is missing: `make backups` lists the names"


def test_backups_of_a_stack_without_postgres(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    env = cli(tmp_path, cli_json(**{**LOCAL, "postgres": {"enabled": False}}))
    monkeypatch.setattr(ops_cli, "load_deploy_key", lambda host, environ: None)
    assert ops_cli.main(["backups", "--stack", "dev"], env=env) == 1
    assert capsys.readouterr().err.strip() == "cutover: stack dev has no PostgreSQL accessory (postgres.enabled), so no dumps"


def test_without_the_pulumi_cli_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ops_cli.main(["status", "--stack", "dev"], env={"PATH": str(tmp_path)}) == 1
    assert capsys.readouterr().err.strip() == "cutover: the pulumi CLI is not installed (https://www.pulumi.com/docs/install/)"


def test_a_renamed_project_reads_its_own_keys_and_names_them_in_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pulumi.yaml `name: shop`: `pulumi config` prints shop:* keys, and a bad one is named shop:..."""
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: shop\nruntime: python\n")
    monkeypatch.chdir(project / "sub")  # the pulumi CLI finds the project upwards from here, so does this
    monkeypatch.setattr(ops_cli, "load_deploy_key", lambda host, environ: None)
    config = cli_json(**{**LOCAL, "appName": "Shop!"}, postgresPassword="pw-for-tests").replace('"cutover:', '"shop:')
    assert ops_cli.main(["backups", "--stack", "dev"], env=cli(tmp_path, config)) == 1
    err = capsys.readouterr().err
    assert 'shop:appName = "Shop!": expected a lowercase name' in err and "cutover:appName" not in err
    assert "pw-for-tests" not in err
    # the same stack under the old name holds none of the project's keys: each is missing, named shop:
    assert ops_cli.main(["backups", "--stack", "dev"], env=cli(tmp_path, cli_json(**LOCAL, postgresPassword="x"))) == 1
    assert "shop:appName is missing" in capsys.readouterr().err
    # and its own keys read
    good = cli_json(**LOCAL, postgresPassword="x").replace('"cutover:', '"shop:')
    cfg = ops_remote.config_from_pulumi_json(good, "dev", "shop")
    assert cfg.app_name == "shop" and cfg.postgres.enabled and cfg.postgres.password is not None


def test_no_project_file_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert ops_cli.main(["status", "--stack", "dev"], env=cli(tmp_path, cli_json(**LOCAL))) == 1
    assert (
        capsys.readouterr().err.strip().startswith(f"cutover: no Pulumi.yaml project file in {tmp_path.resolve()} or any folder above it")
    )


# --------------------------------------------------------------------------- logs' options, exec, restart/stop/start

ROLES = {"worker": {"command": ["python", "-m", "worker"], "healthcheck": {"command": ["python", "-m", "heartbeat", "30"]}}}
API_TOKEN = "api-token-for-tests"
PG_PASSWORD = "pg-password-for-tests"
WITH_SECRETS = {**LOCAL, "roles": ROLES, "secretEnv": {"API_TOKEN": API_TOKEN}, "web": {"env": {"MODE": "live"}}}


def local_cfg(**extra: Any) -> StackConfig:
    return ops_remote.config_from_pulumi_json(cli_json(**{**WITH_SECRETS, **extra}, postgresPassword=PG_PASSWORD), "dev")


def test_logs_argv_follows_docker_logs_own_flags() -> None:
    assert ops_logs.logs_argv(ops_logs.LogOptions()) == ["docker", "logs", "--timestamps", "--tail", "100", "$n"]
    assert ops_logs.logs_argv(ops_logs.LogOptions(follow=True, lines="all", since="2026-11-29T10:00:00Z")) == [
        "docker", "logs", "--timestamps", "--tail", "all", "--since", "2026-11-29T10:00:00Z", "--follow", "$n",
    ]  # fmt: skip
    assert ops_logs.logs_argv(ops_logs.LogOptions(lines="5", since="1h30m"), service=True) == [
        "docker", "service", "logs", "--timestamps", "--tail", "5", "--since", "1h30m", "$s",
    ]  # fmt: skip


@pytest.mark.parametrize("since", ["10m", "1h30m", "2026-11-29", "2026-11-29T10:00:00Z", "2026-11-29T10:00:00.5+01:00", "1764410400"])
def test_since_takes_what_docker_logs_takes(since: str) -> None:
    assert ops_logs.LogOptions(since=since).problems() == []


def test_bad_log_options_are_named_all_at_once() -> None:
    assert ops_logs.LogOptions(lines="ten", since="yesterday", grep="a\nb").problems() == [
        "LINES='ten': expected a whole number of lines from the end, or all",
        "SINCE='yesterday': expected a duration back from now like 10m or 1h30m, or a time like 2026-11-29T10:00:00Z",
        "GREP: expected one line of text",
    ]


def run_script(tmp_path: Path, script: str, docker_body: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`script` under sh, as the server runs it, with a stand-in docker that logs each call to docker-calls."""
    stand_in(tmp_path / "bin", "docker", f'echo "$*" >> "{tmp_path}/docker-calls"\n' + docker_body)
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    return subprocess.run(["/bin/sh", "-c", script], input=stdin, capture_output=True, text=True, env=env, check=False)


def docker_calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "docker-calls"
    return path.read_text().splitlines() if path.exists() else []


def test_logs_keep_only_the_lines_with_the_text_given(tmp_path: Path) -> None:
    cfg = local_cfg()
    options = ops_logs.LogOptions(lines="5", since="10m", grep="it's [x]")
    done = run_script(
        tmp_path,
        ops_logs.logs_script(cfg, "worker", options=options),
        'case "$1" in ps) echo shop-dev-worker-1 ;; logs) printf "a: it\'s [x] here\\nb: nothing\\nc: it\'s x\\nlast: it\'s [x]" ;; esac\n',
    )
    assert done.returncode == 0, done.stderr
    # the text is matched as it is (no pattern), the last line without its newline too
    assert done.stdout.splitlines() == ["shop-dev-worker-1 | a: it's [x] here", "shop-dev-worker-1 | last: it's [x]"]
    assert "logs --timestamps --tail 5 --since 10m shop-dev-worker-1" in docker_calls(tmp_path)


def test_exec_argv_and_the_container_it_runs_in(tmp_path: Path) -> None:
    assert ops_containers.exec_argv(["bin/rails", "console"], interactive=True) == [
        "docker",
        "exec",
        "--interactive",
        "--tty",
        "$name",
        "bin/rails",
        "console",
    ]
    assert ops_containers.exec_argv(["sh", "-c", "echo it's"], interactive=False) == ["docker", "exec", "$name", "sh", "-c", "echo it's"]
    script = ops_containers.exec_script(local_cfg(), "web", "t1", ["sh", "-c", "echo it's $HOME", "$name"], interactive=False)
    done = run_script(tmp_path, script, '[ "$1" = ps ] && printf "shop-dev-web-b\\nshop-dev-web-a\\n"; exit 0\n')
    assert done.returncode == 0, done.stderr
    ps, exec_call = docker_calls(tmp_path)
    assert "--filter label=cutover.role=web --filter label=cutover.release=t1 --filter status=running" in ps
    assert exec_call == "exec shop-dev-web-b sh -c echo it's $HOME $name", "the command's words stay as written"


def test_exec_without_a_running_container_says_so(tmp_path: Path) -> None:
    done = run_script(tmp_path, ops_containers.exec_script(local_cfg(), "worker", "t1", ["true"], interactive=False), "exit 0\n")
    assert done.returncode == 1 and done.stderr.strip() == "no running container of role worker in release t1"


def test_the_one_off_container_gets_the_roles_environment_by_name_only() -> None:
    cfg = local_cfg()
    pairs = ops_containers.one_off_env(cfg, "web", "t1")
    names = [name for name, _ in pairs]
    assert names == ["APP_VERSION", "PORT", "MODE", "API_TOKEN", "DATABASE_URL"]
    argv = ops_containers.one_off_argv(cfg, "web", "t1", names, ["bin/rails", "console"], interactive=True)
    assert argv[:6] == ["docker", "create", "--rm", "--init", "--interactive", "--tty"]
    assert argv[argv.index("--network") + 1] == "shop-dev-private" and argv[argv.index("--user") + 1] == "10001:10001"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--env"] == names
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--label"] == [
        "cutover.app=shop", "cutover.stack=dev", "cutover.role=web-one-off", "cutover.release=t1",
    ]  # fmt: skip
    assert argv[-3:] == ["$image", "bin/rails", "console"]
    assert not any(API_TOKEN in a or PG_PASSWORD in a for a in argv)
    # a worker's: its own variables, no PORT; no accessory, no network
    plain = ops_remote.config_from_pulumi_json(cli_json(**{**LOCAL, "roles": ROLES, "postgres": {"enabled": False}}), "dev")
    worker = ops_containers.one_off_argv(
        plain, "worker", "t1", [n for n, _ in ops_containers.one_off_env(plain, "worker", "t1")], ["true"], interactive=False
    )
    assert "--network" not in worker and "--interactive" not in worker and worker[worker.index("--env") + 1] == "APP_VERSION"


def test_the_one_off_environment_reaches_docker_only_through_its_environment(tmp_path: Path) -> None:
    """The create script, run by sh as the server runs it: the values arrive on stdin and leave in the docker
    CLI's environment; its command line names them only."""
    cfg = local_cfg()
    pairs = ops_containers.one_off_env(cfg, "web", "t1")
    script = ops_containers.one_off_create_script(cfg, "web", "t1", [n for n, _ in pairs], ["env"], interactive=False)
    hashes = tmp_path / "hashes"
    done = run_script(
        tmp_path,
        script,
        'case "$1" in ps) echo ref1 ;; inspect) echo sha256:img ;; '
        f'create) for v in APP_VERSION API_TOKEN DATABASE_URL; do printf "%s " "$v"; printenv "$v" | sha256sum; done > "{hashes}"; '
        f"echo {'c' * 64} ;; esac\n",
        stdin=ops_containers.env_stdin(pairs),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "c" * 64
    create = docker_calls(tmp_path)[-1]
    assert create.startswith("create --rm --init --user 10001:10001 --network shop-dev-private") and create.endswith("sha256:img env")
    assert API_TOKEN not in create and PG_PASSWORD not in create and API_TOKEN not in done.stdout + done.stderr
    database_url = f"postgresql://app:{PG_PASSWORD}@postgres:5432/app"
    expected = [
        f"{n} {hashlib.sha256((v + chr(10)).encode()).hexdigest()}  -"
        for n, v in (("APP_VERSION", "t1"), ("API_TOKEN", API_TOKEN), ("DATABASE_URL", database_url))
    ]
    assert hashes.read_text().splitlines() == expected


def test_a_value_of_several_lines_is_refused_by_name() -> None:
    with pytest.raises(ops_remote.OpsError, match=r"^KEY: a value of more than one line") as err:
        ops_containers.env_stdin([("KEY", Secret("a\nb"))])
    assert "a\nb" not in str(err.value)


def test_the_one_off_runs_attached_and_is_removed() -> None:
    cid = "d" * 64
    assert ops_containers.one_off_start_script(cid, interactive=True).splitlines() == [
        f"docker start --attach --interactive {cid}", "rc=$?", f"docker rm --force {cid} >/dev/null 2>&1 || true", 'exit "$rc"',
    ]  # fmt: skip
    with pytest.raises(ops_remote.OpsError, match="expected a container ID"):
        ops_containers.one_off_start_script("Error: no such image", interactive=False)


def test_lifecycle_argv() -> None:
    assert ops_containers.lifecycle_argv("restart", [ops_remote.N], 600) == ["docker", "restart", "--time", "600", "$n"]
    assert ops_containers.lifecycle_argv("stop", ["a", "b"], 30) == ["docker", "stop", "--time", "30", "a", "b"]
    assert ops_containers.lifecycle_argv("start", ["a"], 30) == ["docker", "start", "a"]
    with pytest.raises(ValueError):
        ops_containers.lifecycle_argv("kill", ["a"], 30)


def health_stand_in(states: str) -> str:
    """A docker whose `inspect` answers, for each container, the next of its states in a file (then the last)."""
    return (
        'case "$1" in ps) printf "shop-dev-web-b\\nshop-dev-web-a\\n" ;; '
        'inspect) for a; do n="$a"; done; f="$(dirname "$0")/state-$n"; '
        f'[ -f "$f" ] || printf "{states}" > "$f"; head -n 1 "$f"; [ "$(wc -l < "$f")" -gt 1 ] && sed -i 1d "$f" ;; esac; exit 0\n'
    )


def test_restart_goes_one_container_at_a_time_each_until_healthy(tmp_path: Path) -> None:
    done = run_script(
        tmp_path, ops_containers.lifecycle_script(local_cfg(), "web", "t1", "restart"), health_stand_in("starting\\nstarting\\nhealthy\\n")
    )
    assert done.returncode == 0, done.stderr
    calls = [c for c in docker_calls(tmp_path) if not c.startswith("ps")]
    assert [c.split()[0] + " " + c.split()[-1] for c in calls] == [
        "restart shop-dev-web-b", "inspect shop-dev-web-b", "inspect shop-dev-web-b", "inspect shop-dev-web-b",
        "restart shop-dev-web-a", "inspect shop-dev-web-a", "inspect shop-dev-web-a", "inspect shop-dev-web-a",
    ]  # fmt: skip
    assert done.stdout.splitlines() == ["shop-dev-web-b: healthy", "shop-dev-web-a: healthy"]
    assert "--filter label=cutover.release=t1" in docker_calls(tmp_path)[0] and "-a " in docker_calls(tmp_path)[0]


def test_restart_stops_at_a_container_that_turns_unhealthy(tmp_path: Path) -> None:
    done = run_script(tmp_path, ops_containers.lifecycle_script(local_cfg(), "worker", "t1", "restart"), health_stand_in("unhealthy\\n"))
    assert done.returncode == 1 and done.stderr.strip() == "shop-dev-web-b: unhealthy"
    assert not [c for c in docker_calls(tmp_path) if c == "restart shop-dev-web-a"], "the next container is left serving"


def test_stop_and_start(tmp_path: Path) -> None:
    cfg = local_cfg()
    assert run_script(tmp_path, ops_containers.lifecycle_script(cfg, "worker", "t1", "stop"), health_stand_in("running\\n")).returncode == 0
    assert docker_calls(tmp_path)[-1] == "stop --time 600 shop-dev-web-b shop-dev-web-a", "the worker's stopTimeout (10m)"
    done = run_script(tmp_path, ops_containers.lifecycle_script(cfg, "worker", "t1", "start"), health_stand_in("running\\n"))
    assert done.returncode == 0 and "start shop-dev-web-b shop-dev-web-a" in docker_calls(tmp_path)
    assert done.stdout.splitlines() == ["shop-dev-web-b: running", "shop-dev-web-a: running"]


RELEASE = '{"tag": "t1", "imageRef": "sha256:' + "ef" * 32 + '"}'


def recording_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], str]]:
    """Every subprocess ops starts: its argv and what it is given on stdin."""
    seen: list[tuple[list[str], str]] = []
    real = subprocess.run

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append((list(argv), str(kwargs.get("input") or "")))
        return real(argv, **kwargs)

    monkeypatch.setattr(ops_remote.subprocess, "run", run)
    return seen


def test_exec_new_end_to_end_keeps_every_value_off_command_lines_and_output(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    docker = (
        f'echo "$*" >> "{tmp_path}/docker-calls"\n'
        f'case "$1" in ps) echo ref1 ;; inspect) echo sha256:img ;; create) printenv API_TOKEN | sha256sum > "{tmp_path}/token"; echo {"e" * 64} ;;'
        " start) exit 3 ;; esac\n"
    )
    env = cli(tmp_path, cli_json(**WITH_SECRETS, postgresPassword=PG_PASSWORD), docker)
    monkeypatch.setattr(ops_cli, "load_deploy_key", lambda host, environ: None)
    seen = recording_run(monkeypatch)
    assert ops_cli.main(["exec", "--stack", "dev", "--new", "--cmd", "bin/rails console"], env=env) == 3, "the command's own exit status"
    out, err = capfd.readouterr()
    calls = docker_calls(tmp_path)
    assert [c.split()[0] for c in calls] == ["ps", "inspect", "create", "start", "rm", "rm"]
    assert calls[3] == f"start --attach {'e' * 64}" and calls[2].endswith("sha256:img bin/rails console")
    assert (tmp_path / "token").read_text().split()[0] == hashlib.sha256(f"{API_TOKEN}\n".encode()).hexdigest()
    for secret in (API_TOKEN, PG_PASSWORD):
        assert secret not in out + err + "\n".join(calls)
        assert not [argv for argv, _ in seen if any(secret in a for a in argv)], "no value on any command line"
    assert [stdin for _, stdin in seen if API_TOKEN in stdin] == [
        ops_containers.env_stdin(ops_containers.one_off_env(local_cfg(), "web", "t1"))
    ]


def test_exec_in_a_running_container_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = cli(
        tmp_path,
        cli_json(**WITH_SECRETS, postgresPassword=PG_PASSWORD),
        f'echo "$*" >> "{tmp_path}/docker-calls"; [ "$1" = ps ] && echo shop-dev-web-a; exit 0\n',
    )
    monkeypatch.setattr(ops_cli, "load_deploy_key", lambda host, environ: None)
    assert ops_cli.main(["exec", "--stack", "dev", "--role", "worker", "--cmd", "python -m worker --once"], env=env) == 0
    assert docker_calls(tmp_path)[-1] == "exec shop-dev-web-a python -m worker --once"
    assert "--filter label=cutover.role=worker --filter label=cutover.release=t1" in docker_calls(tmp_path)[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["exec", "--cmd", ""], "CMD= is missing: expected the command to run, like CMD='bin/rails console'"),
        (["exec", "--cmd", "echo 'unclosed"], 'CMD="echo \'unclosed": expected a command line (No closing quotation)'),
        (["restart", "--role", "bot"], "ROLE='bot': expected one of the roles stack dev runs: web, worker"),
        (["logs", "--lines", "-5", "--since", "soon"], "LINES='-5': expected a whole number of lines from the end, or all; SINCE='soon'"),
        (["stop"], "make stop ROLE=web stops every web container of the release serving dev: the proxy still routes to them"),
    ],
)
def test_what_cannot_be_done_is_one_line_and_nothing_runs_on_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    env = cli(tmp_path, cli_json(**WITH_SECRETS, postgresPassword=PG_PASSWORD), f'echo "$*" >> "{tmp_path}/docker-calls"\n')
    monkeypatch.setattr(ops_cli, "load_deploy_key", lambda host, environ: None)
    assert ops_cli.main([args[0], "--stack", "dev", *args[1:]], env=env) == 1
    assert capsys.readouterr().err.strip().startswith(f"cutover: {message}")
    assert docker_calls(tmp_path) == []


def test_a_cluster_or_a_stack_without_a_release_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops_cli, "load_deploy_key", lambda host, environ: None)
    env = cli(tmp_path, cli_json(**WITH_SECRETS, postgresPassword=PG_PASSWORD), f'echo "$*" >> "{tmp_path}/docker-calls"\n')
    (tmp_path / "bin" / "pulumi").write_text(f'#!/bin/sh\ncase "$1" in config) cat "{tmp_path}/config.json" ;; *) exit 1 ;; esac\n')
    assert ops_cli.main(["restart", "--stack", "dev"], env=env) == 1
    assert capsys.readouterr().err.strip() == "cutover: stack dev records no release yet: `make deploy STACK=dev` first"
    cfg = ops_remote.config_from_pulumi_json(cli_json(**LOCAL, postgresPassword="x"), "dev")
    clustered = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, enabled=True))
    with pytest.raises(ops_remote.OpsError, match=r"make exec acts on one engine's containers; stack dev is a Swarm cluster"):
        ops_containers.single_host(clustered, "exec")
    assert docker_calls(tmp_path) == []


def test_an_interactive_command_gets_a_terminal_on_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    known = "[203.0.113.10]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbWvvJ1nFOkbK1ZkTVe/6lHo0r7rD7mCV8SPl5ZUSN6"
    remote = {**LOCAL, "host": {"url": "ssh://deploy@203.0.113.10:2222", "knownHosts": known}}
    cfg = ops_remote.config_from_pulumi_json(cli_json(**remote, postgresPassword="x", sshPrivateKey=SSH_KEY), "prod")
    assert "-t" in ops_remote.host_argv(cfg, "x", tty=True) and "-T" not in ops_remote.host_argv(cfg, "x", tty=True)
    assert "-T" in ops_remote.host_argv(cfg, "x") and "-t" not in ops_remote.host_argv(cfg, "x")
    # from a terminal, `make exec` asks docker for one too
    env = cli(
        tmp_path,
        cli_json(**WITH_SECRETS, postgresPassword=PG_PASSWORD),
        f'echo "$*" >> "{tmp_path}/docker-calls"; [ "$1" = ps ] && echo shop-dev-web-a; exit 0\n',
    )
    monkeypatch.setattr(ops_cli, "load_deploy_key", lambda host, environ: None)
    monkeypatch.setattr(ops_cli.sys.stdin, "isatty", lambda: True)
    assert ops_cli.main(["exec", "--stack", "dev", "--cmd", "sh"], env=env) == 0
    assert docker_calls(tmp_path)[-1] == "exec --interactive --tty shop-dev-web-a sh"
