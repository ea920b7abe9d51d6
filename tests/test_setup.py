"""`make setup HOST=...` (components/ops/setup.py, components/host/setup.sh): what it asks of its arguments before the
server is reached, the ssh command it runs, and what it prints. The run against a real fresh server is
tests/e2e/test_setup.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.host.containers import LOG_OPTS
from components.ops import setup
from components.ops.remote import OpsError
from tests import lint_tools

PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHV0ZXN0a2V5dGVzdGtleXRlc3RrZXl0ZXN0a2V5 deploy@laptop"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhvc3RrZXlob3N0a2V5aG9zdGtleWhvc3RrZXk"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("ssh://root@203.0.113.7", setup.Target("root", "203.0.113.7", 22)),
        ("ssh://203.0.113.7", setup.Target("root", "203.0.113.7", 22)),
        ("ssh://admin@server.example.com:2222", setup.Target("admin", "server.example.com", 2222)),
        ("ssh://root@[2001:db8::1]:22", setup.Target("root", "2001:db8::1", 22)),
    ],
)
def test_a_host_url_gives_user_host_and_port(url: str, target: setup.Target) -> None:
    assert setup.parse_target(url) == target


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("", "HOST= is missing"),
        ("203.0.113.7", "HOST='203.0.113.7'"),
        ("http://root@203.0.113.7", "HOST='http://root@203.0.113.7'"),
        ("ssh://root@203.0.113.7:port", "the port is not a number"),
        ("ssh://root@203.0.113.7/srv", "HOST='ssh://root@203.0.113.7/srv'"),
        ("ssh://root:secret@203.0.113.7", "HOST='ssh://root:secret@203.0.113.7'"),
        ("ssh://Root Admin@203.0.113.7", "is not a login name"),
    ],
)
def test_a_bad_host_url_is_refused_with_the_value_and_the_form_expected(url: str, said: str) -> None:
    with pytest.raises(OpsError) as error:
        setup.parse_target(url)
    assert said in str(error.value) and "expected ssh://[user@]host[:port]" in str(error.value)


def test_the_key_must_be_one_public_key_line(tmp_path: Path) -> None:
    pub = tmp_path / "id_ed25519.pub"
    pub.write_text(PUB + "\n")
    assert setup.read_public_key(str(pub)) == PUB
    with pytest.raises(OpsError, match=r"KEY='.*missing.pub': no such file; expected the deploy key's public half"):
        setup.read_public_key(str(tmp_path / "missing.pub"))
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n-----END OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(OpsError, match=r"a private key; expected one line '<type> <key> \[comment\]'.*\(the \.pub file\)"):
        setup.read_public_key(str(private))
    two = tmp_path / "two.pub"
    two.write_text(PUB + "\n" + PUB + "\n")
    with pytest.raises(OpsError, match="not one public key line"):
        setup.read_public_key(str(two))


@pytest.mark.parametrize("name", ["root", "Deploy", "1deploy", "de ploy", ""])
def test_the_deploy_user_is_a_login_name_other_than_root(name: str) -> None:
    with pytest.raises(OpsError, match=rf"DEPLOY_USER='{name}': expected a login name other than root"):
        setup.check_user(name)


def test_the_first_connection_takes_the_ed25519_key_into_a_file_of_its_own(tmp_path: Path) -> None:
    argv = setup.ssh_argv(setup.Target("root", "203.0.113.7", 2222), tmp_path / "kh", "deploy", PUB)
    options_json = json.dumps(setup.DAEMON_OPTIONS)
    assert argv[:1] == ["ssh"] and argv[-2:] == ["203.0.113.7", f"sh -s -- deploy '{PUB}' '{options_json}'"]
    assert setup.DAEMON_OPTIONS["log-opts"] == LOG_OPTS and setup.DAEMON_OPTIONS["live-restore"] is True
    options = [argv[i + 1] for i, word in enumerate(argv) if word == "-o"]
    assert "StrictHostKeyChecking=accept-new" in options and "BatchMode=yes" in options
    assert f"UserKnownHostsFile={tmp_path / 'kh'}" in options and "HostKeyAlgorithms=ssh-ed25519" in options
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "root"
    # a user other than root runs it through sudo, never asking for a password
    assert setup.ssh_argv(setup.Target("admin", "h", 22), tmp_path / "kh", "deploy", PUB)[-1].startswith("sudo -n sh -s -- deploy ")


def test_the_pinned_line_names_the_host_as_ssh_keyscan_does() -> None:
    said = f"setup: created user deploy\nhost-key: {HOST_KEY}\n"
    assert setup.pinned_line(setup.Target("root", "203.0.113.7", 22), said) == f"203.0.113.7 {HOST_KEY}"
    assert setup.pinned_line(setup.Target("root", "203.0.113.7", 2222), said) == f"[203.0.113.7]:2222 {HOST_KEY}"
    with pytest.raises(OpsError, match="printed no ed25519 host key"):
        setup.pinned_line(setup.Target("root", "h", 22), "setup: done\n")


def test_the_printed_key_must_be_the_one_the_connection_was_made_with() -> None:
    line = f"203.0.113.7 {HOST_KEY}"
    setup.check_same_key(line, f"203.0.113.7 {HOST_KEY}\n")
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG90aGVyb3RoZXJvdGhlcm90aGVyb3RoZXJvdGhlcjA"
    with pytest.raises(OpsError, match="not the key it offered on this connection"):
        setup.check_same_key(line, f"203.0.113.7 {other}\n")
    with pytest.raises(OpsError):
        setup.check_same_key(line, "")


def test_the_report_gives_the_stack_lines_to_run() -> None:
    target = setup.Target("root", "203.0.113.7", 2222)
    text = setup.report(target, "deploy", f"[203.0.113.7]:2222 {HOST_KEY}", "256 SHA256:abc (ED25519)")
    assert "pulumi config set --path host.url ssh://deploy@203.0.113.7:2222" in text
    assert f"pulumi config set --path host.knownHosts '[203.0.113.7]:2222 {HOST_KEY}'" in text
    assert "SHA256:abc" in text
    assert setup.Target("root", "2001:db8::1", 22).url_for("deploy") == "ssh://deploy@[2001:db8::1]"


def test_bad_arguments_stop_before_the_server_is_reached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any) -> None:
    reached: list[Any] = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: reached.append(a))
    pub = tmp_path / "k.pub"
    pub.write_text(PUB)
    assert setup.main(["--host", "root@203.0.113.7", "--key", str(pub)]) == 1
    assert setup.main(["--host", "ssh://root@203.0.113.7", "--key", str(tmp_path / "none.pub")]) == 1
    assert setup.main(["--host", "ssh://root@203.0.113.7", "--key", str(pub), "--user", "root"]) == 1
    err = capsys.readouterr().err
    assert "cutover: HOST='root@203.0.113.7'" in err and "KEY=" in err and "DEPLOY_USER='root'" in err
    assert reached == []


def test_the_server_script_passes_shellcheck_as_posix_sh() -> None:
    lint_tools.require("shellcheck")
    command = lint_tools.shellcheck_command()
    done = subprocess.run([*command, "--shell=sh", "--severity=style", str(setup.SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_make_setup_hands_its_variables_to_the_command_as_written(tmp_path: Path) -> None:
    done = subprocess.run(
        ["make", "-n", "setup", "HOST=ssh://root@203.0.113.7:2222", "KEY=~/keys/it's.pub", "DEPLOY_USER=ops"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert "-m components.ops.setup --host='ssh://root@203.0.113.7:2222' --key='~/keys/it'\\''s.pub' --user='ops'" in done.stdout
