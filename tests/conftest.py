"""Shared configurations of the program for the unit tests."""

from __future__ import annotations

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
