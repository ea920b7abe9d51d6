"""The Makefile: `make deploy` stops with one clear line when the pulumi CLI or a Docker engine is missing; the
day-to-day targets hand their variables to components/ops/ as given (stand-in `pulumi` and `docker` on PATH)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import agent_keys, new_key
from tests.harness import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def run_make(target: str, path: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=ROOT,
        env={**os.environ, "PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def stripped_path(tmp_path: Path, *tools: str) -> str:
    """A PATH with only the named tools (and what make and the toolchain script need): no pulumi, no go."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("sh", "bash", "make", "true", "cat", "sed", "head", "cut", "dirname", "sha256sum", *tools):
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_missing_pulumi_cli_and_go_is_one_clear_line(tmp_path: Path) -> None:
    out = run_make("deploy", stripped_path(tmp_path, "docker"), TOOLS_DIR=str(tmp_path / "tools"))
    assert out.returncode != 0
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert lines == [
        "cutover: the pulumi CLI is not installed, and building it (make tools) needs Go 1.26.6 or newer: install the CLI "
        "(see https://www.pulumi.com/docs/install/) or Go, then run make deploy again"
    ]
    assert "Traceback" not in out.stdout + out.stderr


def built_cli(tmp_path: Path) -> Path:
    """A tools folder whose bin/pulumi is the one make tools built (its stamp is current), language host or not."""
    tools = tmp_path / "tools"
    (tools / "bin").mkdir(parents=True)
    built = ROOT / ".tools" / "bin"
    if not (built / "pulumi").exists():
        pytest.skip("make tools has not built .tools/bin/pulumi")
    for entry in built.iterdir():
        if entry.name == "pulumi" or entry.name.startswith(".pulumi."):
            (tools / "bin" / entry.name).symlink_to(entry)
    return tools


def test_the_built_cli_is_used_when_none_is_on_path_and_says_it_runs_no_program(tmp_path: Path) -> None:
    tools = built_cli(tmp_path)
    out = run_make("preview", stripped_path(tmp_path, "docker"), TOOLS_DIR=str(tools))
    assert out.returncode != 0
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert lines == [
        f"cutover: {tools}/bin/pulumi has no Python language host beside it: the CLI that make tools builds runs no "
        "program yet (toolchain/README.md says why); install the official CLI with 'curl -fsSL https://get.pulumi.com | sh' "
        "(see https://www.pulumi.com/docs/install/), then run make preview again"
    ]


def test_the_built_cli_serves_the_commands_that_need_no_program(tmp_path: Path) -> None:
    """`make releases` reads stack outputs with the built CLI, under the environment that keeps it offline."""
    tools = built_cli(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    out = run_make(
        "releases", stripped_path(tmp_path), TOOLS_DIR=str(tools), PULUMI_BACKEND_URL=f"file://{state}", PULUMI_HOME=str(tmp_path / "home")
    )
    # no stack was ever deployed here: the real CLI says so, and nothing else went wrong on the way
    assert out.returncode != 0
    assert "current release of dev:" in out.stdout
    assert "no stack named 'dev' found" in out.stderr, out.stderr


def test_missing_docker_engine_is_one_clear_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_pulumi = bin_dir / "pulumi"
    fake_pulumi.write_text("#!/bin/sh\necho pulumi should not run >&2\nexit 99\n")
    fake_pulumi.chmod(0o755)
    (bin_dir / "pulumi-language-python").write_text("#!/bin/sh\nexit 99\n")
    (bin_dir / "pulumi-language-python").chmod(0o755)
    out = run_make("deploy", f"{bin_dir}:{os.environ['PATH']}", DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert out.returncode != 0
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cutover: no Docker engine answers: install Docker")
    assert "pulumi should not run" not in out.stderr


def recording_pulumi(bin_dir: Path, host_url: str, private_key: str = "") -> Path:
    """A stand-in for the pulumi CLI that records each call with the environment the Makefile gave it, and the keys
    its ssh agent holds. `config get --path host.url` answers `host_url`, `config get sshPrivateKey` the key."""
    calls = bin_dir.parent / "calls.jsonl"
    script = f"""#!/usr/bin/env python3
import json, os, subprocess, sys
args = sys.argv[1:]
sock = os.environ.get("SSH_AUTH_SOCK")
agent = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True) if sock else None
with open({str(calls)!r}, "a") as f:
    f.write(json.dumps({{"args": args, "DOCKER_HOST": os.environ.get("DOCKER_HOST"),
                         "CUTOVER_ROLLBACK_TO": os.environ.get("CUTOVER_ROLLBACK_TO"), "SSH_AUTH_SOCK": sock,
                         "agent": agent.returncode if agent else None, "keys": agent.stdout if agent else None}}) + "\\n")
if args[:4] == ["config", "get", "--path", "host.url"]:
    print({host_url!r})
elif args[:3] == ["config", "get", "sshPrivateKey"]:
    sys.stdout.write({private_key!r})
elif args[:2] == ["config", "get"]:
    sys.exit("unexpected")
"""
    path = bin_dir / "pulumi"
    path.write_text(script)
    path.chmod(0o755)
    host = bin_dir / "pulumi-language-python"  # the official CLI ships its language hosts beside itself
    host.write_text("#!/bin/sh\nexit 99\n")
    host.chmod(0o755)
    return calls


def make_calls(target: str, tmp_path: Path, host_url: str, private_key: str = "", **env: str) -> list[dict[str, object]]:
    import json

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = recording_pulumi(bin_dir, host_url, private_key or new_key(tmp_path)[0])
    base = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "DOCKER_HOST")}
    out = subprocess.run(
        ["make", "--no-print-directory", target, "STACK=prod", f"BIN={ROOT / '.venv' / 'bin'}"],
        cwd=ROOT,
        env={**base, "PATH": f"{bin_dir}:{base['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return [json.loads(line) for line in calls.read_text().splitlines()]


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
def test_rollback_of_a_remote_stack_needs_no_local_docker_engine(tmp_path: Path) -> None:
    calls = make_calls("rollback", tmp_path, "ssh://deploy@203.0.113.10:22")
    up = calls[-1]
    assert up["args"] == ["up", "--policy-pack", "policy", "--stack", "prod"] and up["CUTOVER_ROLLBACK_TO"] == "previous"
    # the image build's provider is configured against the server, so it never looks for a local engine
    assert up["DOCKER_HOST"] == "ssh://deploy@203.0.113.10:22"
    assert up["agent"] == 0, "an ssh agent that holds the deploy key lives as long as the command"


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
def test_rollback_of_a_local_stack_keeps_the_local_engine(tmp_path: Path) -> None:
    up = make_calls("rollback", tmp_path, "unix:///var/run/docker.sock")[-1]
    assert up["DOCKER_HOST"] is None


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
@pytest.mark.parametrize(("target", "args"), [("refresh", ["refresh", "--run-program"]), ("destroy", ["destroy", "--run-program"])])
def test_refresh_and_destroy_run_the_program_first(tmp_path: Path, target: str, args: list[str]) -> None:
    """With --run-program each container is read back with the provider as the program declares it now."""
    call = make_calls(target, tmp_path, "ssh://deploy@203.0.113.10:22")[-1]
    assert call["args"] == [*args, "--stack", "prod"] and call["agent"] == 0


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
def test_drift_is_a_preview_that_refreshes_and_expects_no_changes(tmp_path: Path) -> None:
    call = make_calls("drift", tmp_path, "ssh://deploy@203.0.113.10:22")[-1]
    assert call["args"] == [
        "preview",
        "--refresh",
        "--run-program",
        "--expect-no-changes",
        "--diff",
        "--policy-pack",
        "policy",
        "--stack",
        "prod",
    ]
    assert call["agent"] == 0


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
def test_preview_runs_the_policy_pack(tmp_path: Path) -> None:
    call = make_calls("preview", tmp_path, "ssh://deploy@203.0.113.10:22")[-1]
    assert call["args"] == ["preview", "--diff", "--policy-pack", "policy", "--stack", "prod"]


def test_deploy_runs_the_policy_pack() -> None:
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "deploy", "STACK=prod"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    up = [line for line in out.stdout.splitlines() if "pulumi up" in line]
    assert up and up[-1].rstrip("'").split()[-5:] == ["up", "--policy-pack", "policy", "--stack", "prod"], out.stdout


PULUMI_TARGETS = ["deploy", "preview", "rollback", "refresh", "destroy", "drift"]


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
@pytest.mark.parametrize("target", PULUMI_TARGETS)
def test_every_pulumi_command_starts_with_the_deploy_key_in_an_agent_of_its_own(target: str, tmp_path: Path, agent: dict[str, str]) -> None:
    """The key is loaded before pulumi starts (the program only checks), into an agent that lives as long as the
    command: yours, named by SSH_AUTH_SOCK, is left as it was. The key is in no argument and no file."""
    private, public = new_key(tmp_path)
    yours = agent_keys(agent)
    before = set(tmp_path.rglob("*"))
    # deploy first checks for a Docker engine: the stand-in answers
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text("#!/bin/sh\nexit 0\n")
    docker.chmod(0o755)
    calls = make_calls(target, tmp_path, "ssh://deploy@203.0.113.10:22", private, SSH_AUTH_SOCK=agent["SSH_AUTH_SOCK"])
    gets = [c["args"] for c in calls if c["args"][:2] == ["config", "get"]]
    # (rollback reads host.url once more, for DOCKER_HOST)
    assert gets[-2:] == [["config", "get", "--path", "host.url", "--stack", "prod"], ["config", "get", "sshPrivateKey", "--stack", "prod"]]
    assert gets.count(["config", "get", "sshPrivateKey", "--stack", "prod"]) == 1
    run = calls[-1]
    assert run["args"][0] in ("up", "preview", "refresh", "destroy") and run["agent"] == 0
    assert public in str(run["keys"]), "pulumi starts with the deploy key in its agent"
    assert run["SSH_AUTH_SOCK"] != agent["SSH_AUTH_SOCK"], "an agent of the command's own"
    assert agent_keys(agent) == yours, "your agent was left as it was"
    assert not any(private.splitlines()[1] in " ".join(map(str, c["args"])) for c in calls)
    written = set(tmp_path.rglob("*")) - before - {tmp_path / "bin" / "pulumi"}  # the stand-in holds the key it answers
    assert [p for p in written if p.is_file() and "PRIVATE KEY" in p.read_text()] == [], "the key went into no file"


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
def test_a_local_stack_loads_no_key(tmp_path: Path) -> None:
    calls = make_calls("preview", tmp_path, "unix:///var/run/docker.sock")
    assert [c["args"][:3] for c in calls if c["args"][:2] == ["config", "get"]] == [["config", "get", "--path"]]
    assert calls[-1]["args"][0] == "preview" and calls[-1]["agent"] == 1, "an empty agent: nothing to load"


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
def test_a_deploy_key_that_cannot_be_loaded_stops_before_pulumi_with_one_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = recording_pulumi(bin_dir, "ssh://deploy@203.0.113.10:22", "not a key\n")
    base = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "DOCKER_HOST")}
    out = subprocess.run(
        ["make", "--no-print-directory", "preview", "STACK=prod", f"BIN={ROOT / '.venv' / 'bin'}"],
        cwd=ROOT,
        env={**base, "PATH": f"{bin_dir}:{base['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "cutover: the deploy key (sshPrivateKey) of stack prod could not be loaded into the ssh agent of this command" in out.stderr
    assert "preview" not in [line.split('"args": ["', 1)[1].split('"', 1)[0] for line in calls.read_text().splitlines()]


def run_day_to_day(target: str, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`make <target>` with a stand-in pulumi whose stack config cannot be read: what ran, and what it said."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "pulumi").write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "{{}}"\n')
    (bin_dir / "pulumi").chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    out = subprocess.run(
        ["make", "--no-print-directory", target, "STACK=prod", f"BIN={ROOT / '.venv' / 'bin'}", *extra],
        cwd=ROOT,
        env={**base, "PATH": f"{bin_dir}:{base['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
@pytest.mark.parametrize("target", ["status", "logs", "backups"])
def test_day_to_day_commands_read_the_stack_config_and_say_what_is_wrong(tmp_path: Path, target: str) -> None:
    out, calls = run_day_to_day(target, tmp_path)
    assert out.returncode != 0
    assert calls == ["config --json --show-secrets --stack prod"]
    # the stand-in's stack has no config at all: the program's own validation names the first key it needs
    assert "cutover: invalid stack configuration" in out.stderr and "cutover:appName is missing" in out.stderr
    assert "Traceback" not in out.stderr


def test_restore_without_backup_is_one_clear_line(tmp_path: Path) -> None:
    out, calls = run_day_to_day("restore", tmp_path)
    assert out.returncode != 0 and calls == []
    assert out.stdout.strip() == "cutover: BACKUP=<name> is missing: make backups STACK=prod lists the names"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
    return pins


@pytest.mark.parametrize(
    ("requirements", "lock"), [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")]
)
def test_each_lock_pins_what_its_requirements_pin_every_package_with_hashes(requirements: str, lock: str) -> None:
    """The workflows and make install with --require-hashes from the locks: they must follow the requirements."""
    wanted = _pins(ROOT / requirements)
    if requirements == "requirements-dev.txt":
        wanted |= _pins(ROOT / "requirements.txt")
    locked = _pins(ROOT / lock)
    assert {k: locked.get(k) for k in wanted} == wanted, "run make lock"
    entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text().strip())
    assert len(entries) == len(locked) and all("--hash=sha256:" in e for e in entries)


def run_ops_target(tmp_path: Path, *args: str, docker_body: str = "") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`make <args>` against a local stack of a stand-in pulumi (its config and release) and a stand-in docker that
    records each call: the variables as the Makefile hands them to components/ops/."""
    import json

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    config = {
        "cutover:appName": {"value": "shop", "secret": False},
        "cutover:image": {"value": json.dumps({"repository": "ghcr.io/acme/shop", "push": False}), "secret": False},
        "cutover:roles": {
            "value": json.dumps({"worker": {"command": ["python", "-m", "worker"], "healthcheck": {"command": ["true"]}}}),
            "secret": False,
        },
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    calls = tmp_path / "docker-calls"
    (bin_dir / "pulumi").write_text(
        f'#!/bin/sh\ncase "$1" in config) cat {tmp_path / "config.json"} ;; stack) echo \'{{"tag": "t1"}}\' ;; esac\n'
    )
    (bin_dir / "docker").write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {calls}; echo >> {calls}\n{docker_body}')
    for tool in ("pulumi", "docker"):
        (bin_dir / tool).chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "LINES", "SINCE", "GREP", "CMD")}
    out = subprocess.run(
        ["make", "--no-print-directory", *args, "STACK=prod", f"BIN={ROOT / '.venv' / 'bin'}"],
        cwd=ROOT,
        env={**base, "PATH": f"{bin_dir}:{base['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return out, calls.read_text().splitlines() if calls.exists() else []


NAMES = 'case "$1" in ps) echo shop-prod-web-a ;; logs) printf "one it\'s\\ntwo\\n" ;; inspect) echo healthy ;; esac\n'


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
def test_make_logs_hands_over_since_lines_grep_and_no_follow(tmp_path: Path) -> None:
    out, calls = run_ops_target(tmp_path, "logs", "ROLE=worker", "SINCE=10m", "LINES=5", "GREP=it's", "FOLLOW=0", docker_body=NAMES)
    assert out.returncode == 0, out.stderr
    assert calls[-1] == "logs|--timestamps|--tail|5|--since|10m|shop-prod-web-a|"
    assert "label=cutover.role=worker" in calls[0]
    assert out.stdout.splitlines() == ["shop-prod-web-a | one it's"]


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
def test_make_logs_follows_by_default(tmp_path: Path) -> None:
    out, calls = run_ops_target(tmp_path, "logs", docker_body=NAMES)
    assert out.returncode == 0, out.stderr
    assert calls[-1] == "logs|--timestamps|--tail|100|--follow|shop-prod-web-a|"


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
def test_make_exec_hands_over_the_command_as_written(tmp_path: Path) -> None:
    out, calls = run_ops_target(tmp_path, "exec", "CMD=sh -c 'echo \"it'\\''s\" $HOME'", docker_body=NAMES)
    assert out.returncode == 0, out.stderr
    # stdin is no terminal here: no --interactive --tty
    assert calls[-1] == 'exec|shop-prod-web-a|sh|-c|echo "it\'s" $HOME|'
    assert "label=cutover.release=t1" in calls[0]


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
def test_make_exec_new_runs_a_one_off_container(tmp_path: Path) -> None:
    body = 'case "$1" in ps) echo ref1 ;; inspect) echo sha256:img ;; create) echo ' + "a" * 64 + " ;; esac\n"
    out, calls = run_ops_target(tmp_path, "exec", "ROLE=worker", "NEW=1", "CMD=python -m worker --once", docker_body=body)
    assert out.returncode == 0, out.stderr
    assert [c.split("|")[0] for c in calls] == ["ps", "inspect", "create", "start", "rm", "rm"]
    assert calls[2].endswith("|--env|APP_VERSION|sha256:img|python|-m|worker|--once|") and "cutover.role=worker-one-off" in calls[2]


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
def test_make_stop_web_asks_for_confirm(tmp_path: Path) -> None:
    out, calls = run_ops_target(tmp_path, "stop", docker_body=NAMES)
    assert out.returncode != 0 and calls == []
    assert "add CONFIRM=1 to stop them" in out.stderr
    (tmp_path / "again").mkdir()
    out, calls = run_ops_target(tmp_path / "again", "stop", "CONFIRM=1", docker_body=NAMES)
    assert out.returncode == 0, out.stderr
    assert calls[-1] == "stop|--time|30|shop-prod-web-a|"


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="the OpenSSH client is not installed")
@pytest.mark.parametrize("target", ["restart", "start"])
def test_make_restart_and_start_of_a_role(tmp_path: Path, target: str) -> None:
    out, calls = run_ops_target(tmp_path, target, "ROLE=worker", docker_body=NAMES)
    assert out.returncode == 0, out.stderr
    assert {"restart": "restart|--time|600|shop-prod-web-a|", "start": "start|shop-prod-web-a|"}[target] in calls
    assert "label=cutover.role=worker" in calls[0]
    assert out.stdout.strip() == "shop-prod-web-a: healthy"
