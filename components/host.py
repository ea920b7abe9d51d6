"""The Docker host: a docker provider and a command runner for the same machine.

Local (`unix://` socket, the dev stack) or remote over SSH (`ssh://user@host:port`,
prod) with the private key from a secret and the server's host key pinned.
Later components run containers with `host.provider` and shell steps with
`host.command(...)` without knowing which kind of host it is.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.config import HostConfig, Secret


def ssh_files_dir(project: str, stack: str) -> Path:
    """Where the key and known_hosts for the docker CLI's ssh live.

    The path is the same on every run (a changed path would change the provider), and
    private to this user: the per-user runtime directory, else the temp dir with the uid.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and Path(runtime).is_dir() else Path(tempfile.gettempdir())
    return base / f"{project}-{os.getuid()}-{stack}-ssh"


def write_ssh_files(directory: Path, private_key: str, known_hosts: str) -> list[str]:
    """Write the key (0600) and the pinned known_hosts; return the ssh options that use them."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.lstat()
    if directory.is_symlink() or info.st_uid != os.getuid():
        raise PermissionError(f"{directory} is not a directory of this user's: refusing to write the SSH key there")
    os.chmod(directory, 0o700)
    key = directory / "id"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(private_key if private_key.endswith("\n") else private_key + "\n")
    (directory / "known_hosts").write_text(known_hosts.strip() + "\n")
    return ssh_options(directory)


def ssh_options(directory: Path) -> list[str]:
    """Options for the system ssh the docker provider runs: this key only, this host key only."""
    return [
        "-i", str(directory / "id"),
        "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={directory / 'known_hosts'}",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=15",
    ]  # fmt: skip


@dataclass
class DockerHostArgs:
    host: HostConfig
    # Registry login the host's engine uses to pull the app image (a private GHCR package needs it).
    registry: str | None = None
    registry_username: str | None = None
    registry_password: Secret | None = None


class DockerHost(pulumi.ComponentResource):
    """A docker.Provider plus the matching way to run shell commands on that host."""

    provider: docker.Provider
    connection: command.remote.ConnectionArgs | None

    def __init__(self, name: str, args: DockerHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:DockerHost", name, None, opts)
        host = args.host
        self.connection = None
        provider_args: dict[str, Any] = {"host": host.url}
        if args.registry and args.registry_username and args.registry_password is not None:
            provider_args["registry_auth"] = [
                docker.ProviderRegistryAuthArgs(
                    address=args.registry,
                    username=args.registry_username,
                    password=pulumi.Output.secret(args.registry_password.reveal()),
                )
            ]
        if host.is_ssh:
            assert host.private_key is not None and host.known_hosts is not None  # validated by config
            user, address, port = host.ssh
            key = pulumi.Output.secret(host.private_key.reveal())
            directory = ssh_files_dir(pulumi.get_project(), pulumi.get_stack())
            known_hosts = host.known_hosts
            # The options name only file paths; the key itself is written beside them, never passed on.
            provider_args["ssh_opts"] = pulumi.Output.unsecret(key.apply(lambda k: write_ssh_files(directory, k, known_hosts)))
            self.connection = command.remote.ConnectionArgs(
                host=address.strip("[]"),
                port=port,
                user=user,
                private_key=key,
                host_key=host.host_key,
                dial_error_limit=3,
            )
        self.provider = docker.Provider(f"{name}-docker", **provider_args, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"url": host.url})

    def command(
        self,
        name: str,
        create: pulumi.Input[str],
        *,
        stdin: pulumi.Input[str] | None = None,
        triggers: pulumi.Input[list[Any]] | None = None,
        delete: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> command.local.Command | command.remote.Command:
        """A shell step on this host: local on a socket host, over the pinned SSH connection otherwise."""
        opts = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts)
        if self.connection is not None:
            return command.remote.Command(
                name, connection=self.connection, create=create, stdin=stdin, triggers=triggers, delete=delete, opts=opts
            )
        return command.local.Command(
            name, create=create, stdin=stdin, triggers=triggers, delete=delete, interpreter=["/bin/sh", "-c"], opts=opts
        )
