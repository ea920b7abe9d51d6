"""The edge proxy: Caddy in a container, the only thing bound to host ports.

It owns the edge network the web containers join. A release never replaces it
nor reloads it: the traffic switch rewrites the upstream files it reads per
request (/etc/caddy/live). Its volumes keep certificates (/data), state (/config),
the current config and those files (/etc/caddy) across restarts and upgrades.

Two containers: `<prefix>-ports` holds the host ports and the edge network and
does nothing else; Caddy (`<prefix>-proxy-<7 hex>`) runs in its
network namespace, so an upgrade of Caddy starts the new one beside the old one
on the same ports and drops no connection. A third, `<prefix>-proxy-keeper`,
starts Caddy again when an engine restart started it before the ports
container (see components/edge/containers.py proxy_keeper_script).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.cluster.workload import network_options
from components.config.model import ClusterConfig, ProxyConfig, StackIdentity
from components.edge.containers import ports_container, proxy_container, proxy_keeper_container
from components.host.containers import labels
from components.host.docker_host import DockerHost


@dataclass
class EdgeProxyArgs:
    identity: StackIdentity
    host: DockerHost
    proxy: ProxyConfig
    cluster: ClusterConfig  # on a cluster the edge network is an overlay the web service's tasks join


class EdgeProxy(pulumi.ComponentResource):
    network: pulumi.Output[str]
    network_id: pulumi.Output[str]  # what a cluster's services name it by (components/cluster/workload.py)
    container: docker.Container  # Caddy
    ports: docker.Container  # holds the host ports and the edge network
    keeper: docker.Container  # starts Caddy again if the engine's restart raced it
    name: pulumi.Output[str]

    def __init__(self, name: str, args: EdgeProxyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:EdgeProxy", name, None, opts)
        identity, edge = args.identity, args.proxy
        prefix = identity.resource_prefix
        on_host = pulumi.ResourceOptions(parent=self, provider=args.host.provider)
        network = docker.Network(
            f"{name}-network",
            name=f"{prefix}-edge",
            labels=labels(identity, "edge-network"),
            **network_options(args.cluster, {"driver": "bridge"}),
            opts=on_host,
        )
        volumes = {
            path: docker.Volume(
                f"{name}-{suffix}",
                name=f"{prefix}-proxy-{suffix}",
                labels=labels(identity, "proxy-volume"),
                # certificates and config outlive the stack: `pulumi destroy` leaves them on the host
                opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(retain_on_delete=True)),
            ).name
            for path, suffix in (("/data", "data"), ("/config", "config"), ("/etc/caddy", "etc"))
        }
        image = docker.RemoteImage(f"{name}-image", name=edge.image, keep_locally=True, opts=on_host)
        # This container holds the host ports and the edge network; it changes only with the ports (then stop-first,
        # as anything bound to them must). Its image is whatever the proxy's was when it was created: it only
        # runs `sh`, so a new proxy image is no reason to replace it.
        # It was registered as `<name>-container` before; the alias makes the engine take that resource for this one
        # (same, no create and delete). An Alias without `parent` or `type_` keeps this resource's own, so it names
        # `<name>-container` under this EdgeProxy (pulumi/pulumi sdk/python/lib/pulumi/runtime/resource.py
        # create_alias_spec sends an empty parent and type, which pkg/resource/deploy/step_generator.go
        # collapseAliasToUrn fills in with the resource's own; getOldResource finds the old state under that URN, and
        # GenerateDeletes leaves it, as isOperatedOn counts it done; v3.274.1, tests/test_real_engine.py).
        ports = docker.Container(
            f"{name}-ports",
            **ports_container(identity, edge, image.image_id, network.name),
            opts=pulumi.ResourceOptions.merge(
                on_host,
                pulumi.ResourceOptions(
                    delete_before_replace=True, ignore_changes=["image"], aliases=[pulumi.Alias(name=f"{name}-container")]
                ),
            ),
        )
        # Caddy runs in that container's network namespace. A new image (or any other change) starts a new proxy
        # beside the old one: Pulumi names it anew on a replacement (pulumi/pulumi step_generator.go:2003-2013
        # re-runs Check without the old inputs, so the bridge's autoname is drawn again) and creates it first
        # (delete_before_replace False overrides the provider's default, as for the web containers). Both listen
        # on the same ports (Caddy sets SO_REUSEPORT on its listeners: caddy listen_unix.go reusePort), so the
        # kernel hands new connections to either; when the old one is deleted at the end of the update, it
        # answers with `Connection: close` for `shutdown_delay`, so keep-alive clients move over, then stops.
        self.container = docker.Container(
            f"{prefix}-proxy",
            **proxy_container(identity, image.image_id, ports.id.apply(lambda i: f"container:{i}"), volumes),
            opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(delete_before_replace=False, depends_on=[ports])),
        )
        # Its own container with no network, so that nothing it depends on can be missing when the engine starts
        # it. It starts only a proxy whose start the engine refused for want of the ports container; a proxy
        # Pulumi stops or deletes has no such error (components/edge/containers.py proxy_keeper_script says what else).
        keeper_image = docker.RemoteImage(f"{name}-keeper-image", name=edge.keeper_image, keep_locally=True, opts=on_host)
        self.keeper = docker.Container(
            f"{name}-keeper",
            **proxy_keeper_container(identity, args.host.url, keeper_image.image_id),
            opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(delete_before_replace=True)),  # it has a name
        )
        self.ports = ports
        self.network = network.name
        self.network_id = network.id
        self.name = self.container.name
        self.register_outputs({"network": self.network, "container": self.name})
