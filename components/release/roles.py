"""A role beside web (a queue worker, a bot, a scheduler): the release's image with its own command.

Each release has containers of its own per role (`<role>-<release>-<n>`), like web's, on the
private network when there are accessories (a worker talks to Redis or PostgreSQL; nothing
talks to it). They start after the migration, from the same pulled digest, so one release is
one image for every role, rolled back and promoted together.

Rolling roles (`overlap` true, the default) start their new containers beside the old ones and
are waited for until healthy; the old ones are deleted at the end of the update with SIGTERM and
up to the role's stop timeout to finish the job in hand (10 minutes by default). A
single-instance role (`overlap` false) only creates its new container: the go-live step stops
the old one, then starts it (components/release/go_live.py `handover_steps`), so two never run at once.
Both are replaced create-first on any change, for the reasons WEB_CONTAINER_OPTIONS gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.cluster.workload import run_role
from components.config.model import ClusterConfig, RoleConfig, StackIdentity, WebConfig
from components.host.containers import labels
from components.host.docker_host import DockerHost
from components.release.containers import Env, role_container, role_env
from components.release.web import WEB_CONTAINER_OPTIONS, env_output


@dataclass
class RoleReleaseArgs:
    identity: StackIdentity
    host: DockerHost
    role: RoleConfig
    web: WebConfig  # the user, read-only root and tmpfs every role shares, and the secret env
    cluster: ClusterConfig
    image: pulumi.Input[str]  # what the release's roles run (WebRelease.run_image: an image ID, or a digest on a cluster)
    release_key: str
    version: str
    git_sha: str
    gate: list[pulumi.Resource]
    private_network: pulumi.Input[str] | None = None
    private_network_id: pulumi.Input[str] | None = None
    connections: Env = field(default_factory=list)  # how every role reaches the accessories (Accessories.env)


class RoleRelease(pulumi.ComponentResource):
    role: RoleConfig
    containers: list[pulumi.CustomResource]  # the role's containers, or its service on a cluster
    names: pulumi.Output[list[str]]

    def __init__(self, name: str, args: RoleReleaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:RoleRelease", name, None, opts)
        role = args.role
        self.role = role
        on_host = pulumi.ResourceOptions(parent=self, provider=args.host.provider)
        env = env_output(role_env(args.web, role, args.connections), args.version)
        networks = [args.private_network] if args.private_network is not None else []
        role_labels = labels(args.identity, role.name, {"cutover.release": args.version, "cutover.git-sha": args.git_sha})
        running = run_role(
            f"{name}-{args.release_key}",
            args.cluster,
            role_container(args.web, role, args.image, networks),
            replicas=role.replicas,
            env=env,
            labels=role_labels,
            network_ids=[args.private_network_id] if args.private_network_id is not None else [],
            opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(depends_on=args.gate)),
            container_options=WEB_CONTAINER_OPTIONS,
        )
        self.containers = running.resources
        self.names = running.names
        self.register_outputs({"containers": self.names})
