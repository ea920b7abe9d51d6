"""One release of the app on the host: pull by digest, migrate once, start health-gated web containers.

(On a cluster, web's containers are one service instead: components/cluster/workload.py. The rest holds.)

Each release has containers of its own (`web-<release>-<n>`, auto-named on the host,
no host port): Pulumi creates them beside the old release's, and deletes the old
ones at the end of the update because the program no longer declares them.
`wait=True` makes each creation return only once Docker reports it healthy. An
unhealthy release, or a failed migration, stops the update here: the proxy still
routes to the old containers, and nothing is deleted in a failed update.

A change that keeps the release (an env var, a secret, a resource limit) replaces
its containers under the same names, create-first (WEB_CONTAINER_OPTIONS): the
new ones start beside the old ones, the switch moves the traffic, and the old
ones are deleted at the end. If such a replacement never becomes healthy, Pulumi
marks the container it was replacing for deletion, but deletes it only at the end
of the next successful update, after that update's switch (pulumi/pulumi
pkg/resource/deploy/step.go:467-473, step_generator.go:2390-2423).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.accessories.backups import backup_script, password_env
from components.cluster.workload import release_image, run_role
from components.config.model import ClusterConfig, HealthcheckConfig, MigrationsConfig, PostgresConfig, Secret, StackIdentity, WebConfig
from components.host.containers import labels
from components.host.docker_host import DockerHost
from components.release.containers import Env, migration_script, shared_env, web_container, web_env

# How Pulumi must replace a web container: these options override what the docker
# provider asks for, and each one is there because the provider alone would drop requests.
WEB_CONTAINER_OPTIONS = pulumi.ResourceOptions(
    # pulumi-docker declares DeleteBeforeReplace for every docker_container (pulumi-docker
    # provider/resources.go:112-114) and the engine follows the provider unless the program
    # sets the option, true or false (pulumi/pulumi pkg/resource/deploy/step_generator.go:2040-2047;
    # the Python SDK sends it only when set, sdk/python/lib/pulumi/runtime/resource.py:1132-1133).
    # False: a replacement is created, and healthy, before the container it replaces is stopped.
    delete_before_replace=False,
    # Any change replaces, never updates in place: the provider's Update applies only restart
    # policy and resources and silently keeps the old healthcheck, tmpfs and init (kreuzwerker
    # v4.5.0 resource_docker_container_funcs.go:1016-1076). And a container left by a failed
    # update with an init error (never healthy) is replaced, health-gated, by the next update
    # instead of adopted by an empty Update (step_generator.go:2180-2195, 3163-3250: "*" covers
    # the "#initerror" key).
    replace_on_changes=["*"],
    # Docker rewrites memory_swap (to -1 where the kernel does not account swap); read back,
    # that would be a change, and with "*" a replacement, on every update. A replacement
    # still gets the program's value (step_generator.go:2003-2014).
    ignore_changes=["memorySwap"],
)


@dataclass
class WebReleaseArgs:
    identity: StackIdentity
    host: DockerHost
    web: WebConfig
    healthcheck: HealthcheckConfig
    migrations: MigrationsConfig
    cluster: ClusterConfig
    image_ref: pulumi.Input[str]
    release_key: str  # names this release's containers
    version: str
    git_sha: str
    edge_network: pulumi.Input[str] | None  # None: no web role (web.enabled false)
    private_network: pulumi.Input[str] | None = None
    accessories: Sequence[pulumi.Resource] = field(default_factory=list)
    connections: Env = field(default_factory=list)  # how every role reaches the accessories (Accessories.env)
    migrate: bool = True  # a rollback never runs the older image's migrations
    # both set: this database is dumped into this volume before the migration
    backups_volume: pulumi.Input[str] | None = None
    database: PostgresConfig | None = None
    network_ids: list[pulumi.Input[str]] = field(default_factory=list)  # the edge and private networks' IDs


def env_output(pairs: list[tuple[str, str | Secret]], version: str) -> pulumi.Output[list[str]]:
    """NAME=value strings; secret values stay Pulumi secrets (so the whole list is one)."""
    items: list[pulumi.Input[str]] = [f"APP_VERSION={version}"]
    for k, v in pairs:
        if isinstance(v, Secret):
            items.append(pulumi.Output.concat(f"{k}=", v.output))
        else:
            items.append(f"{k}={v}")
    return pulumi.Output.all(*items).apply(list)


class WebRelease(pulumi.ComponentResource):
    """The release on the host: its image pulled by digest, its migration, and web's containers.

    Every role runs this image and starts only after `gate` (the migration, or the pull and the
    accessories when there is none). Without a web role (`web.enabled` false) it has no containers.
    """

    containers: list[pulumi.CustomResource]  # web's containers, or its service on a cluster
    names: pulumi.Output[list[str]]
    image_id: pulumi.Output[str]
    run_image: pulumi.Input[str]
    gate: list[pulumi.Resource]

    def __init__(self, name: str, args: WebReleaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:WebRelease", name, None, opts)
        web = args.web
        on_host = pulumi.ResourceOptions(parent=self, provider=args.host.provider)
        pulled = docker.RemoteImage(f"{name}-image", name=args.image_ref, keep_locally=True, opts=on_host)
        self.image_id = pulled.image_id
        env = env_output(web_env(web, args.connections) if web.enabled else shared_env(web, args.connections), args.version)

        migrate = args.migrations.enabled and args.migrate
        database = args.database
        gate: list[pulumi.Resource] = [pulled, *args.accessories]
        if migrate and args.backups_volume is not None and database is not None and database.password is not None:
            # a dump of the database, kept on the server, before the migration changes it: a failed dump
            # fails the release before the migration runs (components/accessories/backups.py)
            backup = args.host.command(
                f"{name}-backup",
                create=pulumi.Output.all(args.private_network, args.backups_volume).apply(
                    lambda v: backup_script(args.identity, database, v[0], args.version)
                ),
                stdin=password_env(database).output,
                triggers=[pulled.image_id],
                update=":",
                opts=pulumi.ResourceOptions(parent=self, depends_on=gate),
            )
            gate = [backup]
        if migrate:
            script = pulumi.Output.all(pulled.image_id, args.private_network).apply(
                lambda v: migration_script(args.identity, web.user, args.migrations, v[0], v[1])
            )
            migration = args.host.command(
                f"{name}-migrate",
                create=script,
                stdin=env.apply(lambda lines: "\n".join(lines) + "\n"),
                # once per new image: a new image replaces the step, which runs `create`; any other
                # change (the environment, the connection) is an Update, which runs `update` instead
                # of `create` (pulumi-command v1.2.1 remote/commandController.go:63-83): nothing
                triggers=[pulled.image_id],
                update=":",
                opts=pulumi.ResourceOptions(parent=self, depends_on=gate),
            )
            gate = [migration]
        self.gate = gate

        networks: list[pulumi.Input[str]] = [n for n in (args.edge_network, args.private_network) if n is not None]
        release_labels = labels(args.identity, "web", {"cutover.release": args.version, "cutover.git-sha": args.git_sha})
        # what every role of the release runs: the pulled image on a host, its digest on a cluster
        self.run_image = release_image(args.cluster, args.image_ref, pulled.image_id)
        running = run_role(
            f"{name}-{args.release_key}",
            args.cluster,
            web_container(web, args.healthcheck, self.run_image, networks),
            replicas=web.replicas if web.enabled and args.edge_network is not None else 0,
            env=env,
            labels=release_labels,
            network_ids=args.network_ids,
            # no fixed name: the provider auto-names it, so old and new run side by side
            opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(depends_on=gate)),
            container_options=WEB_CONTAINER_OPTIONS,
        )
        self.containers = running.resources
        self.names = running.names
        self.register_outputs({"containers": self.names, "image": self.image_id})
