"""The traffic switch: point the edge proxy at the new web containers, then check through it.

The switch depends on every new web container, so it runs only once all of
them are healthy; its triggers are the container names and the proxy's
Caddyfile, so it runs again exactly when either changes. It rewrites the files
the proxy reads its upstreams from per request (components/caddyfile.py): no
reload, no connection closed. The verification asks the proxy for the health
path and expects the new version; if it never does, the previous upstreams are
put back and the update fails before Pulumi deletes the old containers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.caddyfile import VERIFY_PORT, Route, render_caddyfile
from components.config import StackConfig
from components.host import DockerHost
from components.specs import switch_script, verify_script


@dataclass
class TrafficSwitchArgs:
    config: StackConfig
    host: DockerHost
    proxy_name: pulumi.Input[str]
    upstreams: pulumi.Input[list[str]]
    version: pulumi.Input[str]
    after: list[pulumi.Resource]


class TrafficSwitch(pulumi.ComponentResource):
    caddyfile: pulumi.Output[str]

    def __init__(self, name: str, args: TrafficSwitchArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:TrafficSwitch", name, None, opts)
        cfg = args.config
        self.caddyfile = pulumi.Output.from_input(
            render_caddyfile(
                Route(
                    slots=cfg.web.replicas,
                    port=cfg.web.port,
                    domain=cfg.proxy.domain,
                    email=cfg.proxy.email,
                    grace_period_s=cfg.web.stop_timeout_s,
                )
            )
        )
        proxy = pulumi.Output.from_input(args.proxy_name)
        upstreams = pulumi.Output.from_input(args.upstreams)
        switch = args.host.command(
            f"{name}-route",
            create=pulumi.Output.all(proxy, upstreams).apply(lambda a: switch_script(a[0], list(a[1]), cfg.proxy.drain_s)),
            stdin=self.caddyfile,
            triggers=[self.caddyfile, upstreams, proxy],
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.after),
        )
        resources: list[pulumi.Resource] = [switch]
        if cfg.verify.enabled:
            v = cfg.verify
            script = pulumi.Output.all(proxy, args.version).apply(
                lambda a: verify_script(
                    a[0], VERIFY_PORT, cfg.healthcheck.path, a[1] if v.expect_version else None, v.attempts, v.interval_s
                )
            )
            resources.append(
                args.host.command(
                    f"{name}-verify",
                    create=script,
                    triggers=[self.caddyfile, upstreams, args.version],
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[switch]),
                )
            )
        self.done = resources[-1]
        self.register_outputs({"caddyfile": self.caddyfile})
