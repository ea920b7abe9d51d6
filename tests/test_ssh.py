"""The program only looks for the deploy key in a real ssh agent, the day-to-day commands load it there (never into
a file); the provider's ssh options name no file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from components.config.model import HostConfig, Secret
from components.host.ssh import (
    AgentError,
    check_deploy_key,
    docker_ssh_options,
    fingerprint,
    known_hosts_line,
    load_command,
    load_deploy_key,
    public_key,
)
from tests.conftest import agent_keys, new_key

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


def listed(env: dict[str, str]) -> str:
    return agent_keys(env)


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
    assert "make status STACK=" in message and 'eval "$(ssh-agent -s)"' in message


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


# --------------------------------------------------------------------------- the program's check: it only reads


LOAD = "pulumi config get sshPrivateKey --stack prod | ssh-add -t 3600 -"


def test_the_load_command_pipes_the_key_from_the_cli_to_ssh_add() -> None:
    assert load_command("prod") == LOAD
    assert load_command("team/prod's") == "pulumi config get sshPrivateKey --stack 'team/prod'\"'\"'s' | ssh-add -t 3600 -"


def test_the_public_key_is_read_from_the_private_key_as_ssh_keygen_reads_it(tmp_path: Path) -> None:
    private, public = new_key(tmp_path)
    assert public_key(private) == ("ssh-ed25519", public)
    rsa, rsa_public = new_key(tmp_path, "", "-t", "rsa", "-b", "2048", "-m", "PEM")  # the older PEM format: by ssh-keygen
    assert rsa.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert public_key(rsa) == ("ssh-rsa", rsa_public)
    listed_fp = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", "/dev/stdin"], input=f"ssh-ed25519 {public}\n", capture_output=True, text=True
    )
    assert fingerprint(public) == listed_fp.stdout.split()[1]


def test_the_check_passes_when_the_agent_holds_the_key_and_changes_nothing(agent: dict[str, str], tmp_path: Path) -> None:
    private, public = new_key(tmp_path)
    other, _ = new_key(tmp_path)
    load_deploy_key(host(other), agent, lifetime_s=600)
    load_deploy_key(host(private), agent, lifetime_s=600)  # as `make` loads it before pulumi starts
    before = listed(agent)
    assert public in before
    check_deploy_key(host(private), "cutover", "prod", agent)
    assert listed(agent) == before


def test_an_agent_without_the_key_is_refused_with_what_to_run(agent: dict[str, str], tmp_path: Path) -> None:
    private, public = new_key(tmp_path)
    other, _ = new_key(tmp_path)
    load_deploy_key(host(other), agent, lifetime_s=600)
    before = listed(agent)
    with pytest.raises(AgentError) as err:
        check_deploy_key(host(private), "acme-shop", "prod", agent)
    message = str(err.value)
    assert f"the ssh agent at SSH_AUTH_SOCK={agent['SSH_AUTH_SOCK']} does not hold acme-shop:sshPrivateKey" in message
    assert f"(ssh-ed25519 {fingerprint(public)})" in message and "ssh://deploy@203.0.113.10:2222" in message
    assert "make deploy STACK=prod" in message and LOAD in message
    assert "PRIVATE KEY" not in message and private.split("\n")[1] not in message
    assert listed(agent) == before, "the check added nothing to the agent"


def test_an_empty_agent_is_refused_and_stays_empty(agent: dict[str, str], tmp_path: Path) -> None:
    private, _ = new_key(tmp_path)
    with pytest.raises(AgentError, match="does not hold cutover:sshPrivateKey"):
        check_deploy_key(host(private), "cutover", "prod", agent)
    assert listed(agent).strip() == "The agent has no identities."


def test_no_agent_at_all_says_how_to_start_one_and_load_the_key(tmp_path: Path) -> None:
    private, _ = new_key(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    with pytest.raises(AgentError) as err:
        check_deploy_key(host(private), "cutover", "prod", env)
    message = str(err.value)
    assert message.startswith("host.url is ssh://deploy@203.0.113.10:2222: the docker provider logs in with cutover:sshPrivateKey")
    assert "SSH_AUTH_SOCK" in message and 'eval "$(ssh-agent -s)"' in message and LOAD in message
    assert "make deploy STACK=prod" in message and "adds nothing" in message


def test_a_dead_agent_socket_is_named_by_the_check(tmp_path: Path) -> None:
    private, _ = new_key(tmp_path)
    with pytest.raises(AgentError) as err:
        check_deploy_key(host(private), "cutover", "prod", {**os.environ, "SSH_AUTH_SOCK": "/nonexistent/agent.sock"})
    assert "no ssh agent answers at SSH_AUTH_SOCK=/nonexistent/agent.sock" in str(err.value) and LOAD in str(err.value)


def test_local_hosts_are_not_checked() -> None:
    check_deploy_key(HostConfig(), "cutover", "dev", {})  # no agent, no error: the local engine needs no key
