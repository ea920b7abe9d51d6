"""The traffic switch: the new release goes live through the edge proxy, checked through it, on probation.

One command on the host (components/release/go_live.py `go_live_script`) does it all, so it
is one Pulumi step that either succeeded and is recorded, or failed and is not:

1. every new web container (and every new container of a rolling role) must be running and
   healthy at that moment (whatever an earlier, failed update left in Pulumi's state), or
   nothing changes; each single-instance role's old container stops, then its new one starts
   and must pass its probe;
2. the proxy's private verify listener, over slot files of its own that now name the new
   release, is asked for the health path and must get it answered by a new container (with
   the new version when `verify.expectVersion`); if it never is, the step fails and no
   public slot ever named the release. When the proxy's own settings change (a new
   Caddyfile), this check comes after step 3 instead, and a failure puts the previous
   upstreams back;
3. the proxy's public upstream files are rewritten to name them (no reload, no connection
   closed; Caddy reloads only when its own settings change); with `releases.canary`, the
   first slot alone first, watched on its own (components/release/go_live.py
   `canary_steps`), the rest only once it passed;
4. probation (`releases.probation`): the live release is watched, the containers of every role through
   Docker's events (dying, restarting, turning unhealthy) and its answers through the
   proxy's access log (the share of 5xx); on any of these the previous upstreams are put
   back at once and the step fails, saying which container did what, with its last log
   lines. The previous release's containers run all along, unrouted: nothing of them is
   deleted before this step succeeds;
5. the old routes get `proxy.drain` before Pulumi deletes the old containers.

On a cluster the upstreams are services (components/cluster/workload.py): step 1 counts their running tasks,
step 2 names the service in each slot, and step 4 watches their tasks instead of Docker's events.

It depends on every new web container, so it runs only once all of them are healthy.
Its triggers are the container names, the proxy and its Caddyfile: a change of any
replaces the step (create-before-delete: pulumi-command's `triggers` are
replaceOnChanges, pulumi-command v1.2.1 provider/pkg/provider/common/inputs.go:10), so
it runs again exactly when the routes change; any other change of its inputs switches
nothing. A failed step is not stored, so retrying the same release runs it again in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.config.model import ProxyConfig, StackIdentity, VerifyConfig, WebConfig
from components.edge.caddyfile import VERIFY_PORT, Route, render_caddyfile
from components.host.docker_host import DockerHost
from components.release.go_live import Canary, Handover, Probation, Verification, go_live_script
from components.release.roles import RoleRelease


@dataclass
class TrafficSwitchArgs:
    identity: StackIdentity
    host: DockerHost
    web: WebConfig  # its slots, port, grace period and wait
    proxy: ProxyConfig  # the site, its certificates and the drain
    health_path: str  # what the verification, and the proxy's own probe of each slot, ask for
    health_port: int | None  # the port the probe asks on, when not the app's (healthcheck.port)
    verify: VerifyConfig
    probation: Probation
    on_cluster: bool  # the upstreams are Swarm services (components/cluster/workload.py)
    canary: Canary | None  # one slot first, before the full switch
    proxy_name: pulumi.Input[str] | None  # None: no web role, nothing to route
    upstreams: pulumi.Input[list[str]]
    version: pulumi.Input[str]
    after: list[pulumi.Resource]
    roles: list[RoleRelease] = field(default_factory=list)


class TrafficSwitch(pulumi.ComponentResource):
    caddyfile: pulumi.Output[str] | None
    done: pulumi.CustomResource  # the go-live step: its id exists once it succeeded

    def __init__(self, name: str, args: TrafficSwitchArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:TrafficSwitch", name, None, opts)
        web, edge = args.web, args.proxy
        self.caddyfile = None
        if args.proxy_name is not None:
            self.caddyfile = pulumi.Output.from_input(
                render_caddyfile(
                    Route(
                        slots=web.replicas,
                        port=web.port,
                        domain=edge.domain,
                        email=edge.email,
                        grace_period_s=web.stop_timeout_s,
                        acme_ca=edge.acme_ca,
                        acme_ca_root=edge.acme_ca_root is not None,
                        health_path=args.health_path,
                        health_port=args.health_port,
                        upstream_timeout_ms=edge.upstream_timeout_ms,
                    )
                )
            )
        proxy = pulumi.Output.from_input(args.proxy_name) if args.proxy_name is not None else None
        upstreams = pulumi.Output.from_input(args.upstreams)
        roles = args.roles
        role_names = pulumi.Output.all(*[r.names for r in roles]).apply(lambda names: [list(n) for n in names])

        def script(proxy_name: str | None, web_names: list[str], per_role: list[list[str]], version: str) -> str:
            v = args.verify
            check = Verification(VERIFY_PORT, args.health_path, version if v.expect_version else None, v.attempts, v.interval_s)
            handovers = [
                Handover(args.identity.app_name, args.identity.stack, r.role.name, names[0], r.role.stop_timeout_s, r.role.wait_timeout_s)
                for r, names in zip(roles, per_role, strict=True)
                if not r.role.overlap
            ]
            return go_live_script(
                proxy_name,
                web_names,
                drain_s=edge.drain_s,
                wait_healthy_s=web.wait_timeout_s,
                verification=check if v.enabled else None,
                probation=args.probation,
                handovers=handovers,
                watched=[*web_names, *(n for names in per_role for n in names)],
                acme_ca_root=edge.acme_ca_root,
                on_cluster=args.on_cluster,
                canary=args.canary,
            )

        triggers: list[pulumi.Input[Any]] = [upstreams, role_names]
        if self.caddyfile is not None and proxy is not None:
            triggers = [self.caddyfile, upstreams, proxy, role_names]
        self.done = args.host.command(
            f"{name}-traffic",
            create=pulumi.Output.all(proxy, upstreams, role_names, args.version).apply(lambda a: script(a[0], list(a[1]), a[2], a[3])),
            stdin=self.caddyfile,
            triggers=triggers,
            # A change of anything else (verification or probation settings, the drain, the connection) finds
            # these containers already live: an Update runs `update` instead of `create` (pulumi-command
            # v1.2.1 remote/commandController.go:63-83), and there is nothing to switch again.
            update="echo 'already live: these containers serve; nothing to switch'",
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.after),
        )
        self.register_outputs({"caddyfile": self.caddyfile})
