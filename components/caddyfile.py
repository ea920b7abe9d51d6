"""The edge proxy's configuration, rendered from the list of web containers to route to.

Pure: the switch step feeds the result to `caddy reload`. Caddy drains in-flight
requests of the old configuration (grace period) and retries a failed dial on
another upstream (lb_try_duration), so a reload between two healthy sets of
containers drops nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

# A listener inside the proxy container only (never published): the post-switch
# check asks it, so it sees exactly the routes the public site uses.
VERIFY_PORT = 9180
ADMIN = "localhost:2019"


@dataclass(frozen=True)
class Route:
    upstreams: tuple[str, ...]  # container names on the edge network
    port: int  # the app's port inside its container
    health_path: str = "/health"
    domain: str | None = None
    email: str | None = None
    grace_period_s: int = 30


def _block(lines: list[str], indent: int = 1) -> list[str]:
    pad = "\t" * indent
    return [pad + line if line else "" for line in lines]


def render_caddyfile(route: Route) -> str:
    if not route.upstreams:
        raise ValueError("the proxy needs at least one upstream container")
    for u in route.upstreams:
        if not u or any(c.isspace() or c in "{}" for c in u):
            raise ValueError(f"upstream {u!r} is not a container name")
    dials = " ".join(f"{u}:{route.port}" for u in route.upstreams)
    proxy = [
        f"reverse_proxy {dials} {{",
        *_block(
            [
                "lb_policy round_robin",
                # a failed dial (a container going away) is retried on another upstream
                "lb_try_duration 5s",
                "lb_try_interval 100ms",
                "fail_duration 10s",
                f"health_uri {route.health_path}",
                "health_interval 2s",
                "health_timeout 2s",
            ]
        ),
        "}",
    ]
    globals_ = ["admin " + ADMIN, f"grace_period {route.grace_period_s}s"]
    if route.email:
        globals_.append(f"email {route.email}")
    if route.domain is None:
        globals_.append("auto_https off")
    site = route.domain if route.domain else ":80"
    lines = [
        "# Written by cutover's traffic switch on every release; edits here are replaced.",
        "{",
        *_block(globals_),
        "}",
        "",
        f"{site} {{",
        *_block(proxy),
        "}",
        "",
        f"http://:{VERIFY_PORT} {{",
        *_block(["bind 127.0.0.1", *proxy]),
        "}",
    ]
    return "\n".join(lines) + "\n"
