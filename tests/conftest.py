"""Shared configurations of the program for the unit tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import load_stack_file

# the header of an unencrypted OpenSSH key (cipher "none"), no key material: enough for config checks
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAA=\n-----END OPENSSH PRIVATE KEY-----"
KNOWN_HOSTS = "203.0.113.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTests"
PROD_SECRETS = {
    "sshPrivateKey": SSH_KEY,
    "registryPassword": "ghcr-token-for-tests",
    "secretEnv": '{"SECRET_KEY": "app-secret-for-tests"}',
    "githubSecrets": '{"PULUMI_CONFIG_PASSPHRASE": "passphrase-for-tests"}',
}


def prod_config() -> tuple[dict[str, Any], set[str]]:
    """Pulumi.prod.yaml plus the secrets and host key the README tells a team to set."""
    raw, secrets = load_stack_file("prod")
    raw = {**raw, **PROD_SECRETS, "host": {**raw["host"], "knownHosts": KNOWN_HOSTS}}
    return raw, secrets | set(PROD_SECRETS)


def full_config() -> tuple[dict[str, Any], set[str]]:
    """Every optional part on: accessories, migrations, extra tags, a bounded build cache, 3 replicas, a domain."""
    raw, secrets = prod_config()
    raw = {
        **raw,
        "image": {**raw["image"], "extraTags": ["stable"], "buildCacheKept": "10g"},
        "web": {**raw["web"], "replicas": 3},
        "postgres": {"enabled": True},
        "redis": {"enabled": True},
        "migrations": {"command": ["alembic", "upgrade", "head"]},
        "postgresPassword": "pg-password-for-tests",
        "redisPassword": "redis-password-for-tests",
    }
    return raw, secrets | {"postgresPassword", "redisPassword"}


@pytest.fixture
def dev() -> tuple[dict[str, Any], set[str]]:
    return load_stack_file("dev")


@pytest.fixture
def prod() -> tuple[dict[str, Any], set[str]]:
    return prod_config()


@pytest.fixture
def full() -> tuple[dict[str, Any], set[str]]:
    return full_config()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real ssh-agent of its own, stopped afterwards: the environment of a shell that started it."""
    if shutil.which("ssh-agent") is None:
        pytest.fail("ssh-agent is not installed (the OpenSSH client): the program needs it for ssh:// hosts")
    sock = tmp_path / "agent.sock"
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True, check=True)
    pid = int(out.stdout.split("SSH_AGENT_PID=", 1)[1].split(";", 1)[0])
    try:
        yield {**os.environ, "SSH_AUTH_SOCK": str(sock)}
    finally:
        os.kill(pid, signal.SIGTERM)


def new_key(directory: Path, passphrase: str = "", *extra: str) -> tuple[str, str]:
    """A new ed25519 key (or what `extra` asks ssh-keygen for): the private key's text and the public key's base64."""
    path = directory / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "cutover-test", *extra, "-f", str(path)], check=True)
    private, public = path.read_text(), (directory / "key.pub").read_text().split()[1]
    path.unlink()
    (directory / "key.pub").unlink()
    return private, public


def agent_keys(env: dict[str, str]) -> str:
    """What the agent holds, as `ssh-add -L` lists it."""
    return subprocess.run(["ssh-add", "-L"], capture_output=True, text=True, env=env, check=False).stdout
