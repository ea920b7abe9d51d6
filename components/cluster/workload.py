"""Where a release's roles run: containers on one Docker host, or Swarm services on a cluster.

What is declared differs here and only here (`cluster.enabled`): the workload of each role, the
networks' driver and the image the roles run. The release sequence — the image, the backup and
the migration, the proxy and the accessories, the go-live step — is the same on both; the
go-live step and `make status` ask the same flag how to gate, watch and show what runs
(components/release/go_live.py `service_gate`, `cluster_watch_loop`; components/ops/).

- on a host, each role of a release is `replicas` containers (`<role>-<release>-<n>`);
- on a cluster, it is one Swarm service (`<role>-<release>-<7 hex>`, autonamed) with `replicas` tasks spread over
  the nodes, from the same container spec (components/cluster/service.py `service_spec`), pulled by
  every node by digest from the registry. The proxy and the accessories stay containers on
  the manager, the host cutover connects to; the networks they share with the tasks are
  attachable overlays, so a task on any node reaches them and they reach it.

Both are replaced create-first on any change, for the same reasons (WEB_CONTAINER_OPTIONS in
components/release/web.py, SERVICE_OPTIONS here): a new release starts beside the old one, the
switch moves the traffic, the old one is deleted at the end of the update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

from components.cluster.service import service_spec
from components.config.model import ClusterConfig

# How Pulumi must replace a service.
SERVICE_OPTIONS = pulumi.ResourceOptions(
    # pulumi-docker declares no DeleteBeforeReplace for docker_service and autonames it (provider/resources.go:135,
    # 404), so a replacement is created first under a new name; said here anyway, as for the containers: a
    # replacement must exist, converged, before the service it replaces is removed.
    delete_before_replace=False,
    # Any change is a new service, never an in-place Update: that would be Swarm's own rolling update of the
    # serving release (kreuzwerker v4.5.0 resource_docker_service_funcs.go:169-225 sends the whole spec to
    # ServiceUpdate), which routes to each new task before the release is verified, and which a failure leaves
    # half-done (update_config failure_action "pause" by default).
    replace_on_changes=["*"],
    # Create asks the registry for the image's manifest and writes its platforms into the placement (docker
    # client service_create.go:88-102, with QueryRegistry set by kreuzwerker v4.5.0
    # resource_docker_service_funcs.go:45); Read stores them, and with "*" that would replace the service on
    # the next update.
    ignore_changes=["taskSpec.placement.platforms"],
)


@dataclass
class Running:
    """What runs one role of a release, and the names the go-live step and the proxy use for it: the
    containers' names on a host; on a cluster the service's name, once per replica (one proxy slot each)."""

    resources: list[pulumi.CustomResource]
    names: pulumi.Output[list[str]]


def network_options(cluster: ClusterConfig, on_host: dict[str, Any] | None = None) -> dict[str, Any]:
    """A network the release's roles, the proxy and the accessories share: on one host as `on_host` says (a bridge,
    the default); on a cluster an overlay (VXLAN between the nodes), attachable so that the manager's plain
    containers can join it."""
    if cluster.enabled:
        return {"driver": "overlay", "attachable": True}
    return dict(on_host or {})


def release_image(cluster: ClusterConfig, image_ref: pulumi.Input[str], pulled_id: pulumi.Input[str]) -> pulumi.Input[str]:
    """The image the release's roles run: the image the host pulled (by its ID); on a cluster the digest-pinned
    reference, which every node pulls from the registry."""
    return image_ref if cluster.enabled else pulled_id


def run_role(
    name: str,
    cluster: ClusterConfig,
    container: dict[str, Any],
    *,
    replicas: int,
    env: pulumi.Output[list[str]],
    labels: list[Any],
    network_ids: list[pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
    container_options: pulumi.ResourceOptions,
) -> Running:
    """`replicas` containers with `container`'s spec on a host, or one service running them on a cluster (on the
    networks `network_ids` name, the same ones as the container's)."""
    if replicas == 0:
        return Running([], pulumi.Output.from_input([]))  # a role that does not run (web.enabled false)
    if cluster.enabled:
        spec = service_spec(cluster, container, replicas, labels, network_ids)
        # NAME=value lines (a secret when any value is) as the service's map of variables
        spec["task_spec"]["container_spec"]["env"] = env.apply(lambda lines: dict(line.split("=", 1) for line in lines))
        service = docker.Service(name, **spec, opts=pulumi.ResourceOptions.merge(opts, SERVICE_OPTIONS))
        return Running([service], service.name.apply(lambda n: [n] * replicas))
    containers = [
        docker.Container(f"{name}-{i}", envs=env, labels=labels, **container, opts=pulumi.ResourceOptions.merge(opts, container_options))
        for i in range(replicas)
    ]
    return Running(list(containers), pulumi.Output.all(*[c.name for c in containers]).apply(list))
