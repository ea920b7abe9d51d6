"""cutover: build the app image, release it on the host with zero downtime, record the release.

Order of one `pulumi up` (each step waits for the one before):
image -> host pulls the digest -> migration -> new web containers, healthy ->
go live (health gate, proxy switch, verification through the proxy, probation: one step) ->
release recorded -> old images pruned -> old containers deleted.
On a Swarm cluster (`cluster.enabled`) each role's containers are one service over the
nodes instead; the sequence is the same (components/cluster/workload.py).

Running the program changes nothing on the machine it runs on: it reads the stack's config, the
checkout (git reads that write nothing) and which keys the ssh agent holds. What acts is a
resource, and acts on `pulumi up` only.
"""

import os

import pulumi

from components.accessories.databases import Accessories, AccessoriesArgs
from components.config.load import load_config
from components.config.model import ConfigError, StackConfig
from components.edge.proxy import EdgeProxy, EdgeProxyArgs
from components.github.pipeline import GitHubPipeline, pipeline_args
from components.host.docker_host import DockerHost, DockerHostArgs
from components.host.ssh import AgentError, check_deploy_key
from components.release.go_live import Canary, Probation
from components.release.housekeeping import Housekeeping, HousekeepingArgs, kept_images
from components.release.image import AppImage, AppImageArgs
from components.release.plan import ReleasePlan, load_release_plan, role_summary
from components.release.records import ReleaseError
from components.release.roles import RoleRelease, RoleReleaseArgs
from components.release.switch import TrafficSwitch, TrafficSwitchArgs
from components.release.web import WebRelease, WebReleaseArgs


async def main() -> None:
    """The program: the release plan needs the stack's own outputs, read before anything is registered, so it is
    awaited here, in the entrypoint pulumi.run awaits once this module's code has run."""
    try:
        cfg = load_config()
        plan = await load_release_plan(cfg, os.environ)
        # the ssh agent the docker provider logs in with holds the deploy key: asked, never changed (components/host/ssh.py)
        check_deploy_key(cfg.host, pulumi.get_project(), cfg.stack)
    except (ConfigError, ReleaseError, AgentError) as error:
        # One message, before any resource is registered: nothing changes on the server, nor on this machine.
        raise SystemExit(str(error)) from None
    register_release(cfg, plan)


def register_release(cfg: StackConfig, plan: ReleasePlan) -> None:
    """Every resource of the release, in the order above, and the stack's outputs."""
    identity = cfg.identity  # what every name and label on the host starts from
    image = AppImage("app", AppImageArgs(cfg.image, deploy_ref=plan.deploy_ref, cache_from=plan.cache_from))
    host = DockerHost("host", DockerHostArgs(cfg.host, cfg.image.registry, cfg.image.registry_username, cfg.image.registry_password))
    proxy = (
        EdgeProxy("proxy", EdgeProxyArgs(identity, host, cfg.proxy, cfg.cluster)) if cfg.web.enabled else None
    )  # no web role: nothing to route
    accessories = Accessories(
        "accessories",
        AccessoriesArgs(
            identity, host, cfg.postgres, cfg.redis, cfg.cluster,
            backups=cfg.postgres.backups_kept > 0 and cfg.migrations.enabled,
        ),
    )  # fmt: skip
    web = WebRelease(
        "web",
        WebReleaseArgs(
            identity, host, cfg.web, cfg.healthcheck, cfg.migrations, cfg.cluster,
            image_ref=image.ref, release_key=plan.key, version=plan.version, git_sha=plan.git_sha,
            migrate=plan.mode not in ("rollback", "redeploy"),  # an image already released ran its migrations then
            edge_network=proxy.network if proxy else None, private_network=accessories.network, accessories=accessories.containers,
            connections=accessories.env, backups_volume=accessories.backups_volume, database=cfg.postgres,
            network_ids=[i for i in (proxy.network_id if proxy else None, accessories.network_id) if i is not None],
        ),
    )  # fmt: skip
    roles = [
        RoleRelease(
            role.name,
            RoleReleaseArgs(
                identity, host, role, cfg.web, cfg.cluster,
                image=web.run_image, release_key=plan.key, version=plan.version, git_sha=plan.git_sha, gate=web.gate,
                private_network=accessories.network, private_network_id=accessories.network_id, connections=accessories.env,
            ),
        )
        for role in cfg.roles
    ]  # fmt: skip
    switch = TrafficSwitch(
        "switch",
        TrafficSwitchArgs(
            identity, host, cfg.web, cfg.proxy, health_path=cfg.healthcheck.path, health_port=cfg.healthcheck.port, verify=cfg.verify,
            probation=Probation(cfg.releases.probation_s, cfg.releases.probation_error_rate), on_cluster=cfg.cluster.enabled,
            canary=Canary(cfg.releases.canary_s, cfg.releases.probation_error_rate),
            proxy_name=proxy.name if proxy else None, upstreams=web.names, version=plan.version, roles=roles,
            after=[*web.containers, *(c for r in roles for c in r.containers), *([proxy.container] if proxy else [])],
        ),
    )  # fmt: skip
    if cfg.github.enabled:
        GitHubPipeline("github", pipeline_args(cfg))

    # Recorded only once the release went live, was verified and passed its probation.
    records = pulumi.Output.all(image.ref, switch.done.id).apply(lambda a: plan.records(a[0], cfg.releases.probation_s, role_summary(cfg)))
    pulumi.export("release", records.apply(lambda r: r[0]))
    pulumi.export("releases", records.apply(lambda r: r[1]))
    # The images older releases no longer need leave the server.
    Housekeeping(
        "housekeeping",
        HousekeepingArgs(
            cfg.image.repository, host, records.apply(lambda r: kept_images(r[0], r[1], cfg.releases.images_kept)), after=[switch.done]
        ),
    )
    if cfg.web.enabled:
        pulumi.export("url", cfg.public_url)
    pulumi.export("containers", web.names)  # on a cluster: web's service, once per replica
    pulumi.export(
        "roles",
        pulumi.Output.all(*[r.names for r in roles]).apply(lambda names: {r.role.name: n for r, n in zip(roles, names, strict=True)}),
    )


pulumi.run(main)
