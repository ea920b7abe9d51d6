"""One release of the app on the host: pull by digest, migrate once, start health-gated web containers.

Each release has containers of its own (`web-<release>-<n>`, auto-named on the host,
no host port): Pulumi creates them beside the old release's, and deletes the old
ones at the end of the update because the program no longer declares them.
`wait=True` makes each creation return only once Docker reports it healthy. An
unhealthy release, or a failed migration, stops the update here: the proxy still
routes to the old containers, which nothing has marked for deletion, so the next
update (a fix, or a rollback to what runs) starts with them still serving.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.config import Secret, StackConfig
from components.host import DockerHost
from components.specs import labels, migration_script, web_container, web_env


@dataclass
class WebReleaseArgs:
    config: StackConfig
    host: DockerHost
    image_ref: pulumi.Input[str]
    release_key: str  # names this release's containers
    version: str
    git_sha: str
    edge_network: pulumi.Input[str]
    private_network: pulumi.Input[str] | None = None
    accessories: list[pulumi.Resource] = field(default_factory=list)
    migrate: bool = True  # a rollback never runs the older image's migrations


def env_output(pairs: list[tuple[str, str | Secret]], version: str) -> pulumi.Output[list[str]]:
    """NAME=value strings; secret values stay Pulumi secrets (so the whole list is one)."""
    items: list[pulumi.Input[str]] = [f"APP_VERSION={version}"]
    for k, v in pairs:
        if isinstance(v, Secret):
            items.append(pulumi.Output.secret(f"{k}={v.reveal()}"))
        else:
            items.append(f"{k}={v}")
    return pulumi.Output.all(*items).apply(list)


class WebRelease(pulumi.ComponentResource):
    containers: list[docker.Container]
    names: pulumi.Output[list[str]]
    image_id: pulumi.Output[str]

    def __init__(self, name: str, args: WebReleaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:WebRelease", name, None, opts)
        cfg = args.config
        on_host = pulumi.ResourceOptions(parent=self, provider=args.host.provider)
        pulled = docker.RemoteImage(f"{name}-image", name=args.image_ref, keep_locally=True, opts=on_host)
        self.image_id = pulled.image_id
        env = env_output(web_env(cfg), args.version)

        gate: list[pulumi.Resource] = [pulled, *args.accessories]
        if cfg.migrations.enabled and args.migrate:
            script = pulumi.Output.all(pulled.image_id, args.private_network).apply(lambda v: migration_script(cfg, v[0], v[1]))
            migration = args.host.command(
                f"{name}-migrate",
                create=script,
                stdin=env.apply(lambda lines: "\n".join(lines) + "\n"),
                triggers=[pulled.image_id],
                opts=pulumi.ResourceOptions(parent=self, depends_on=gate),
            )
            gate = [migration]

        networks: list[pulumi.Input[str]] = [args.edge_network]
        if args.private_network is not None:
            networks.append(args.private_network)
        release_labels = labels(cfg, "web", {"cutover.release": args.version, "cutover.git-sha": args.git_sha})
        self.containers = []
        for i in range(cfg.web.replicas):
            self.containers.append(
                docker.Container(
                    f"{name}-{args.release_key}-{i}",
                    envs=env,
                    labels=release_labels,
                    **web_container(cfg, pulled.image_id, networks),
                    # no fixed name: a same-tag rebuild is replaced create-first, never delete-first
                    opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(depends_on=gate)),
                )
            )
        self.names = pulumi.Output.all(*[c.name for c in self.containers]).apply(list)
        self.register_outputs({"containers": self.names, "image": self.image_id})
