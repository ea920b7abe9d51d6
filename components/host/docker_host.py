"""The Docker host: a docker provider and a command runner for the same machine.

Local (`unix://` socket, the dev stack) or remote over SSH (`ssh://user@host:port`,
prod) with the server's host key pinned. The provider's ssh options name no file
and log in with the key the ssh agent holds (components/host/ssh.py says why); the
command runner gets the key inline, as a secret. Later components run containers
with `host.provider` and shell steps with `host.command(...)` without knowing
which kind of host it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.config.model import HostConfig, Secret
from components.host.ssh import docker_ssh_options


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
    url: str  # host.url: the engine's socket (unix://) or the server (ssh://)

    def __init__(self, name: str, args: DockerHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:DockerHost", name, None, opts)
        host = args.host
        self.url = host.url
        self.connection = None
        provider_args: dict[str, Any] = {"host": host.url}
        if args.registry and args.registry_username and args.registry_password is not None:
            provider_args["registry_auth"] = [
                docker.ProviderRegistryAuthArgs(
                    address=args.registry,
                    username=args.registry_username,
                    password=args.registry_password.output,
                )
            ]
        if host.is_ssh:
            assert host.private_key is not None and host.known_hosts is not None  # validated by config
            user, address, port = host.ssh
            provider_args["ssh_opts"] = docker_ssh_options(host)
            self.connection = command.remote.ConnectionArgs(
                host=address.strip("[]"),
                port=port,
                user=user,
                private_key=host.private_key.output,
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
        update: str | None = None,
        delete: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> command.local.Command | command.remote.Command:
        """A shell step on this host: local on a socket host, over the pinned SSH connection otherwise."""
        opts = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts)
        if self.connection is not None:
            return command.remote.Command(
                name, connection=self.connection, create=create, stdin=stdin, triggers=triggers, update=update, delete=delete, opts=opts
            )
        return command.local.Command(
            name, create=create, stdin=stdin, triggers=triggers, update=update, delete=delete, interpreter=["/bin/sh", "-c"], opts=opts
        )
