"""The edge proxy's configuration: routes that read their upstreams from files at request time.

Pure. The Caddyfile names no container. Each upstream is a placeholder,
`{file./etc/caddy/live/<n>}:<port>`, that Caddy (2.8 or newer) fills per request
from a file holding one web container's name, which Docker's DNS resolves on the
edge network. The traffic switch points the proxy at a new release by rewriting
those small files (each by an atomic rename); Caddy's HTTP server is never
reloaded for a release, so no client connection is closed by a release.

A private listener reads its own slot files, `/etc/caddy/verify/<n>`: the switch
points them at the new release first and checks it through the proxy there,
before any public slot names it.

The Caddyfile changes only with the proxy's own settings (port, domain, email,
number of replicas); then the switch validates it and reloads Caddy once.
"""

from __future__ import annotations

from dataclasses import dataclass

# A listener inside the proxy container only (never published), with the public site's routing options over
# slots of its own (VERIFY_DIR): the switch's check asks it for the new release before the public slots change.
VERIFY_PORT = 9180
# Caddy's admin endpoint: a socket in the proxy container's own /tmp (a tmpfs), so that while an old and a
# new proxy share one network namespace (an upgrade, components/edge/proxy.py), a reload reaches the one it names.
ADMIN_SOCKET = "/tmp/caddy-admin.sock"
ADMIN = f"unix/{ADMIN_SOCKET}"
# How long a proxy told to stop goes on serving, answering `Connection: close` (keep-alive clients then
# reconnect, to the proxy that stays), before it closes its listeners and its idle connections.
SHUTDOWN_DELAY_S = 2
CADDYFILE = "/etc/caddy/Caddyfile"
# One file per upstream slot, each holding a web container's name (no newline).
LIVE_DIR = "/etc/caddy/live"
# The verify listener's slots, the same way: the release being checked, never read by the public site.
VERIFY_DIR = "/etc/caddy/verify"
# The CA certificate(s) a private ACME directory's own HTTPS certificate is checked against (proxy.acmeCARoot),
# written there by the switch before it validates the Caddyfile.
ACME_CA_ROOT = "/etc/caddy/acme-ca-root.pem"
# On the private verify listener only, every answer names the upstream that gave it (`<container>:<port>`):
# the switch's check reads it to know a new container answered, whatever the app puts in its body.
UPSTREAM_HEADER = "X-Cutover-Upstream"


@dataclass(frozen=True)
class Route:
    slots: int  # upstreams: one per web replica
    port: int  # the app's port inside its container
    domain: str | None = None
    email: str | None = None
    grace_period_s: int = 30
    acme_ca: str | None = None  # the ACME directory (Caddy's default issuers when None)
    acme_ca_root: bool = False  # trust ACME_CA_ROOT for that directory's HTTPS
    health_path: str = "/health"  # what the proxy's own probe of each slot asks for (healthcheck.path)
    health_port: int | None = None  # the port it asks on, when not the app's (healthcheck.port)
    upstream_timeout_ms: int = 1000  # how long that probe may take (proxy.upstreamTimeout)


# The proxy probes each slot this often; UPSTREAM_FAILS probes in a row that fail or take longer than the
# route's upstream timeout set it aside until one passes.
UPSTREAM_CHECK_INTERVAL_MS = 500
UPSTREAM_FAILS = 2


def _block(lines: list[str], indent: int = 1) -> list[str]:
    pad = "\t" * indent
    return [pad + line if line else "" for line in lines]


def slot_path(n: int, directory: str = LIVE_DIR) -> str:
    return f"{directory}/{n}"


def render_caddyfile(route: Route) -> str:
    if route.slots < 1:
        raise ValueError(f"the proxy needs at least one upstream slot, got {route.slots}")
    dials = " ".join(f"{{file.{slot_path(n)}}}:{route.port}" for n in range(route.slots))
    # A failed dial (a container restarting or going away) is tried again, on another upstream if any,
    # within lb_try_duration. A dial to a container that is gone does not fail fast under load: its name
    # is unknown to Docker's DNS, which forwards the query to the host's resolvers, and with many lookups at
    # once those time out (measured: 20 concurrent lookups of an unknown name took 5 s each). So each try is
    # bounded (dial_timeout), and a slot whose dial failed is set aside for one second (passive health,
    # fail_duration), so requests in that second go to the other slots instead of each paying a timed-out
    # dial. Caddy keeps that memory per configured upstream, the slot's placeholder, not per container
    # (caddy modules/caddyhttp/reverseproxy/hosts.go: Host keyed by Upstream.Dial, replaced per request
    # by fillDialInfo), so it must stay short: a slot set aside just before the switch or a probation
    # put a healthy container in it is back within the second. When every slot is set aside, Caddy waits
    # and selects again rather than failing (reverseproxy.go tryAgain retries errNoUpstream), within
    # lb_try_duration.
    balancing = ["lb_policy round_robin", "lb_try_duration 5s", "lb_try_interval 100ms", "fail_duration 1s", "max_fails 1"]
    transport = ["transport http {", "\tdial_timeout 500ms", "}"]
    # A container that hangs (frozen, deadlocked, its node cut off) still accepts connections in the kernel, so
    # its dials succeed and nothing above sets it aside: each request sent to it waits for its client to give
    # up. The proxy's own probe finds it: every UPSTREAM_CHECK_INTERVAL_MS each slot is asked for the health
    # path, and UPSTREAM_FAILS failed or late answers in a row take the slot out of rotation until one passes
    # (a hung slot is out within interval x fails + timeout: 2 s by default). The probe fills the slot's
    # placeholder itself, so it asks whichever container the slot names now (caddy
    # modules/caddyhttp/reverseproxy/healthchecks.go doActiveHealthCheckForAllHosts: caddy.NewReplacer,
    # whose global placeholders include {file.*}, then ReplaceOrErr on Upstream.Dial), and the state it sets
    # is the slot's, per handler (Upstream.setHealthy). It runs beside the requests: a slow request in flight
    # is never cut by it. Only the public site probes, and only releases that passed the check on the verify
    # listener reach its slots: a release whose health path fails through the proxy is refused there, so
    # the probe never sets aside every slot of the site at once, which would hold each request for
    # lb_try_duration. The verify listener's slots are other placeholders, so other hosts to Caddy (keyed by
    # the dial string, hosts.go): what the check meets there never counts against a public slot.
    probe = [
        f"health_uri {route.health_path}",
        *([f"health_port {route.health_port}"] if route.health_port not in (None, route.port) else []),
        f"health_interval {UPSTREAM_CHECK_INTERVAL_MS}ms",
        f"health_timeout {route.upstream_timeout_ms}ms",
        f"health_fails {UPSTREAM_FAILS}",
        "health_passes 1",
    ]
    proxy = [f"reverse_proxy {dials} {{", *_block([*balancing, *probe, *transport]), "}"]
    # Caddy sets {http.reverse_proxy.upstream.hostport} to the dial address once it has picked an upstream, before
    # the round trip, and applies header_down to that upstream's answer with the same replacer (caddy
    # modules/caddyhttp/reverseproxy/reverseproxy.go proxyLoopIteration, then reverseProxy: Headers.Response).
    named = f"header_down {UPSTREAM_HEADER} {{http.reverse_proxy.upstream.hostport}}"
    verify_dials = " ".join(f"{{file.{slot_path(n, VERIFY_DIR)}}}:{route.port}" for n in range(route.slots))
    verify_proxy = [f"reverse_proxy {verify_dials} {{", *_block([*balancing, *transport, named]), "}"]
    globals_ = ["admin " + ADMIN, f"grace_period {route.grace_period_s}s", f"shutdown_delay {SHUTDOWN_DELAY_S}s"]
    if route.email:
        globals_.append(f"email {route.email}")
    # A private or staging ACME directory, and the CA its own HTTPS certificate comes from (Caddy global
    # options acme_ca and acme_ca_root). The account and the certificates are kept in /data, a volume that
    # outlives releases and proxy replacements, so nothing is issued again by a deploy.
    if route.acme_ca:
        globals_.append(f"acme_ca {route.acme_ca}")
    if route.acme_ca_root:
        globals_.append(f"acme_ca_root {ACME_CA_ROOT}")
    if route.domain is None:
        globals_.append("auto_https off")
    site = route.domain if route.domain else ":80"
    # one JSON line per answer on the container's stdout: probation counts the 5xx among them, and a canary
    # those of one upstream, named in the line's `upstream` field (`<container>:<port>`). log_append adds it
    # "late", once reverse_proxy has answered, so the placeholder holds the upstream it picked (caddy
    # modules/caddyhttp/logging/logadd.go LogAppend.ServeHTTP: next handler first, then the field)
    access_log = ["log {", "\toutput stdout", "\tformat json", "}", "log_append upstream {http.reverse_proxy.upstream.hostport}"]
    # While this proxy is stopping ({http.shutting_down}, during shutdown_delay: caddy modules/caddyhttp/app.go
    # Stop, replacer.go), every answer closes its connection (Go's server honours a handler's Connection: close),
    # so no keep-alive connection is left idle on it to be closed under a client sending its next request.
    draining = ["@stopping vars {http.shutting_down} true", "header @stopping Connection close"]
    lines = [
        "# Written by cutover's traffic switch when the proxy's settings change; edits here are replaced.",
        f"# Upstreams are read per request from {LIVE_DIR}/<n>, rewritten on every release.",
        "{",
        *_block(globals_),
        "}",
        "",
        f"{site} {{",
        *_block([*access_log, *draining, *proxy]),
        "}",
        "",
        f"http://:{VERIFY_PORT} {{",
        *_block(["bind 127.0.0.1", *verify_proxy]),
        "}",
    ]
    return "\n".join(lines) + "\n"
