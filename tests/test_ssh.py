"""The deploy key reaches a real ssh agent, never a file; the provider's ssh options name no file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.config import HostConfig, Secret
from components.ssh import AgentError, docker_ssh_options, known_hosts_line, load_deploy_key

KNOWN = "[203.0.113.10]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample a comment"


def host(key: str = "unused", known: str = KNOWN) -> HostConfig:
    return HostConfig(url="ssh://deploy@203.0.113.10:2222", known_hosts=known, private_key=Secret(key))


def test_the_providers_options_pin_the_key_inline_and_name_no_file() -> None:
    options = docker_ssh_options(host())
    pairs = dict(options[i + 1].split("=", 1) for i in range(0, len(options), 2))
    assert set(options[::2]) == {"-o"}
    assert pairs["StrictHostKeyChecking"] == "yes" and pairs["BatchMode"] == "yes"
    assert pairs["UserKnownHostsFile"] == pairs["GlobalKnownHostsFile"] == "/dev/null"
    assert pairs["KnownHostsCommand"] == "/bin/echo [203.0.113.10]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
    assert known_hosts_line(host()) == "[203.0.113.10]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
    # docker/cli adds its own `-o ConnectTimeout=30` unless the options mention one
    assert pairs["ConnectTimeout"] == "15"
    assert not any("%" in o for o in options), "ssh would expand % tokens in KnownHostsCommand"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real ssh-agent of its own, stopped afterwards."""
    if shutil.which("ssh-agent") is None:
        pytest.fail("ssh-agent is not installed (the OpenSSH client): the program needs it for ssh:// hosts")
    sock = tmp_path / "agent.sock"
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True, check=True)
    pid = int(out.stdout.split("SSH_AGENT_PID=", 1)[1].split(";", 1)[0])
    try:
        yield {**os.environ, "SSH_AUTH_SOCK": str(sock)}
    finally:
        os.kill(pid, signal.SIGTERM)


def new_key(directory: Path, passphrase: str = "") -> tuple[str, str]:
    path = directory / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "cutover-test", "-f", str(path)], check=True)
    private, public = path.read_text(), (directory / "key.pub").read_text().split()[1]
    path.unlink()
    (directory / "key.pub").unlink()
    return private, public


def listed(env: dict[str, str]) -> str:
    return subprocess.run(["ssh-add", "-L"], capture_output=True, text=True, env=env, check=False).stdout


def test_the_key_goes_to_the_agent_for_a_while_and_to_no_file(agent: dict[str, str], tmp_path: Path) -> None:
    private, public = new_key(tmp_path)
    before = set(tmp_path.rglob("*"))
    load_deploy_key(host(private), agent, lifetime_s=600)
    assert public in listed(agent)
    assert set(tmp_path.rglob("*")) == before, "nothing was written beside the agent's socket"
    load_deploy_key(host(private), agent, lifetime_s=600)  # again: still one key
    assert listed(agent).count(public) == 1


def test_the_agent_forgets_the_key_after_its_lifetime(agent: dict[str, str], tmp_path: Path) -> None:
    import time

    private, public = new_key(tmp_path)
    # 3 s: long enough that a loaded machine still lists the key right after loading it
    load_deploy_key(host(private), agent, lifetime_s=3)
    assert public in listed(agent)
    deadline = time.monotonic() + 15
    while public in listed(agent) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert public not in listed(agent)


def test_no_agent_is_one_clear_message() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    with pytest.raises(AgentError) as err:
        load_deploy_key(host(), env)
    message = str(err.value)
    assert "ssh://deploy@203.0.113.10:2222" in message and "SSH_AUTH_SOCK" in message
    assert "make deploy STACK=" in message and 'eval "$(ssh-agent -s)"' in message


def test_a_key_the_agent_refuses_says_so_without_the_key(agent: dict[str, str], tmp_path: Path) -> None:
    private, _ = new_key(tmp_path, passphrase="a passphrase")  # ssh-add cannot ask for it: stdin is the key
    with pytest.raises(AgentError) as err:
        load_deploy_key(host(private), {**agent, "SSH_ASKPASS": "/bin/false", "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ""})
    assert "ssh-add could not give sshPrivateKey to the agent" in str(err.value)
    assert "PRIVATE KEY" not in str(err.value)


def test_a_dead_agent_socket_is_named(tmp_path: Path) -> None:
    private, _ = new_key(tmp_path)
    with pytest.raises(AgentError, match=r"SSH_AUTH_SOCK=/nonexistent/agent\.sock"):
        load_deploy_key(host(private), {**os.environ, "SSH_AUTH_SOCK": "/nonexistent/agent.sock"})


def test_local_hosts_need_no_key() -> None:
    load_deploy_key(HostConfig(), {})  # no agent, no error: nothing to do
