"""The edge proxy: Caddy in a container, the only thing bound to host ports.

It owns the edge network the web containers join. A release never replaces it
nor reloads it: the traffic switch rewrites the upstream files it reads per
request (/etc/caddy/live). Its volumes keep certificates (/data), state (/config),
the current config and those files (/etc/caddy) across restarts and upgrades.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import StackConfig
from components.host import DockerHost
from components.specs import labels, proxy_container


@dataclass
class EdgeProxyArgs:
    config: StackConfig
    host: DockerHost


class EdgeProxy(pulumi.ComponentResource):
    network: pulumi.Output[str]
    container: docker.Container
    name: pulumi.Output[str]

    def __init__(self, name: str, args: EdgeProxyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:EdgeProxy", name, None, opts)
        cfg = args.config
        prefix = cfg.resource_prefix
        on_host = pulumi.ResourceOptions(parent=self, provider=args.host.provider)
        network = docker.Network(
            f"{name}-network", name=f"{prefix}-edge", driver="bridge", labels=labels(cfg, "edge-network"), opts=on_host
        )
        volumes = {
            path: docker.Volume(
                f"{name}-{suffix}",
                name=f"{prefix}-proxy-{suffix}",
                labels=labels(cfg, "proxy-volume"),
                # certificates and config outlive the stack: `pulumi destroy` leaves them on the host
                opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(retain_on_delete=True)),
            ).name
            for path, suffix in (("/data", "data"), ("/config", "config"), ("/etc/caddy", "etc"))
        }
        image = docker.RemoteImage(f"{name}-image", name=cfg.proxy.image, keep_locally=True, opts=on_host)
        self.container = docker.Container(
            f"{name}-container",
            **proxy_container(cfg, image.image_id, network.name, volumes),
            # bound to fixed host ports, so an upgrade of the proxy itself must stop the old one first
            opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(delete_before_replace=True)),
        )
        self.network = network.name
        self.name = self.container.name
        self.register_outputs({"network": self.network, "container": self.name})
