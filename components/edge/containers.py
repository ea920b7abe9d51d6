"""The edge's containers, computed without Pulumi: the ports holder, Caddy, and the keeper.

Plain data (keyword arguments of `docker.Container`) that components/edge/proxy.py declares,
so tests read exactly what the provider is asked for.
"""

from __future__ import annotations

import shlex
from typing import Any

from components.config.model import ProxyConfig, StackIdentity
from components.edge.caddyfile import ADMIN_SOCKET
from components.host.containers import HARDENING, labels

# The ports container only holds the network namespace: the host ports and the edge network. It does
# nothing but wait (and exits at once on SIGTERM); the proxy runs in its namespace.
PORTS_HOLD = ["sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]


def ports_container(identity: StackIdentity, p: ProxyConfig, image_id: Any, network: Any) -> dict[str, Any]:
    """The one container bound to host ports: it holds them, and the edge network, for the proxy."""
    ports: list[dict[str, Any]] = [{"internal": 80, "external": p.http_port}]
    if p.https_port is not None:
        ports.append({"internal": 443, "external": p.https_port})
    if p.bind_address:
        ports = [{**port, "ip": p.bind_address} for port in ports]
    # Without `ip` the provider sends HostIP "0.0.0.0" (kreuzwerker v4.5.0 resource_docker_container.go:509-523)
    # and Docker binds IPv4 only (moby libnetwork drivers/bridge/port_mapping_linux.go:354-357). A second `::`
    # binding would read back in another order and replace this stop-first container on every update
    # (kreuzwerker#909): the proxy is IPv4-only, as README says.
    return {
        "image": image_id,
        "name": f"{identity.resource_prefix}-ports",
        "command": PORTS_HOLD,
        "ports": ports,
        "read_only": True,
        "networks_advanced": [{"name": network}],
        "stop_timeout": 5,
        "destroy_grace_seconds": 10,
        "labels": labels(identity, "ports"),
        **HARDENING,
    }  # fmt: skip


# The engine's socket on a server reached over ssh:// (the engine's default): the keeper's only way in.
DOCKER_SOCKET = "/var/run/docker.sock"


KEEPER_INTERVAL_S = 2


# How the engine words a start refused because the container whose network namespace it joins is not running
# (moby v20.10.24 daemon/container_operations.go:1002-1007 getNetworkedContainer "cannot join network of a non
# running container", errors.go:32-33 "... is restarting, wait until the container is running"; v28.5.2
# daemon/container_operations.go:925-929 "cannot join network namespace of ...").
JOIN_REFUSED = ('*"cannot join network"*', '*"is restarting, wait until the container is running"*')


def keeper_socket(url: str) -> str:
    """The engine's socket on the server: the one `host.url` names when it is a unix:// socket (the engine is on
    the machine running Pulumi), DOCKER_SOCKET over ssh://."""
    return url.removeprefix("unix://") if url.startswith("unix://") else DOCKER_SOCKET


def proxy_keeper_script(identity: StackIdentity) -> str:
    """The keeper's loop: every KEEPER_INTERVAL_S, while the ports container runs, start each of this stack's
    proxies that the engine refused to start because the ports container was not running yet.

    Why: when the engine starts again (a dockerd restart, a reboot) it starts every container with a restart
    policy at once, in no order but legacy links' (moby v20.10.24 daemon/daemon.go:510-541; the same in
    v28.5.2 daemon/daemon.go:568-600), so Caddy may start before the container whose network it joins; that
    start fails, the failed start is never retried (daemon/start.go:121-140 only records the error), and the
    site stays down (moby issue 50326). A link cannot order them: Docker refuses links with a `container:`
    network mode (runconfig/hostconfig.go:56, ErrConflictContainerNetworkAndLinks). Docker 29 waits for the
    container whose network a container joins, for 5 s at most (moby d4e026fe20, docker-v29.1.0
    daemon/daemon.go:605-633): there the keeper is the backstop for a slower start.

    Only a start refused for that reason is retried: a proxy stopped on purpose (an old one Pulumi is deleting)
    has no error (the engine clears it when a container runs: moby v20.10.24 container/state.go:268) and is left
    alone; a proxy that failed for any other reason is left to the next deploy. What it cannot tell: a new proxy
    whose first start, by Pulumi, was refused for that same reason (the ports container stopped in the middle of
    an update); that update failed, and the keeper starts that proxy once the ports run, as the engine would
    have. An error of the keeper's own (no engine on the socket, no permission) is printed once, when it
    changes: `docker logs <app>-<stack>-proxy-keeper`."""
    ports = shlex.quote(f"{identity.resource_prefix}-ports")
    filters = " ".join(
        f"--filter {shlex.quote(f)}"
        for f in (f"label=cutover.app={identity.app_name}", f"label=cutover.stack={identity.stack}", "label=cutover.role=proxy")
    )
    return f"""trap 'exit 0' TERM INT
echo "starting the proxies of {ports} that the engine refused to start, every {KEEPER_INTERVAL_S} s"
last=
while :; do
  ports_running=$(docker inspect -f '{{{{.State.Running}}}}' {ports} 2>&1)
  if [ "$ports_running" != "$last" ]; then
    case "$ports_running" in
      true|false|*"No such"*) ;;
      *) echo "cannot ask the engine about {ports}: $ports_running" ;;
    esac
    last=$ports_running
  fi
  if [ "$ports_running" = true ]; then
    for id in $(docker ps -aq {filters} --filter status=exited --filter status=created); do
      error=$(docker inspect -f '{{{{.State.Error}}}}' "$id") || continue
      case "$error" in
        {"|".join(JOIN_REFUSED)})
          echo "proxy $id was not started ($error): starting it"
          docker start "$id" >/dev/null || echo "proxy $id: the start failed, again in {KEEPER_INTERVAL_S} s" ;;
      esac
    done
  fi
  sleep {KEEPER_INTERVAL_S} & wait $!
done
"""


def proxy_keeper_container(identity: StackIdentity, host_url: str, image_id: Any) -> dict[str, Any]:
    """The proxy's keeper (proxy_keeper_script): the Docker CLI with the engine's socket and no network at all,
    so that its own start depends on no other container. DOCKER_HOST is set, so an image's entrypoint (the
    official docker:cli's picks a socket or tcp://docker:2375 when it is unset) has no choice to make."""
    socket = keeper_socket(host_url)
    return {
        "image": image_id,
        "name": f"{identity.resource_prefix}-proxy-keeper",
        "command": ["sh", "-c", proxy_keeper_script(identity)],
        "envs": [f"DOCKER_HOST=unix://{DOCKER_SOCKET}"],
        "network_mode": "none",
        "read_only": True,
        "volumes": [{"host_path": socket, "container_path": DOCKER_SOCKET}],
        "stop_timeout": 5,
        "destroy_grace_seconds": 10,
        "labels": labels(identity, "proxy-keeper"),
        **HARDENING,
    }  # fmt: skip


def proxy_container(identity: StackIdentity, image_id: Any, network_mode: Any, volumes: dict[str, Any]) -> dict[str, Any]:
    """Caddy, in the ports container's network namespace (network_mode `container:<its id>`): it listens on the
    ports that one holds and reaches the app over the edge network. No name: Pulumi names it (<resource>-<7 hex>)
    and names a replacement anew, so a new proxy starts beside the old one (see components/edge/proxy.py)."""
    return {
        "image": image_id,
        "network_mode": network_mode,
        "read_only": True,
        "tmpfs": {"/tmp": "rw,noexec,nosuid,size=16m"},
        "volumes": [{"volume_name": volumes[path], "container_path": path} for path in sorted(volumes)],
        "healthcheck": {
            # up with its configuration loaded: its own admin socket (or, on the first start, when the volume
            # still holds the image's default Caddyfile, the default admin address; nothing else shares it then)
            "tests": ["CMD", "sh", "-c", f"test -S {ADMIN_SOCKET} || wget -q -O /dev/null http://localhost:2019/config/"],
            "interval": "2s", "timeout": "3s", "retries": 3, "start_period": "5s",
        },
        "wait": True,
        "wait_timeout": 60,
        "stop_timeout": 40,
        "destroy_grace_seconds": 40,
        "labels": labels(identity, "proxy"),
        **{**HARDENING, "capabilities": {"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]}},
    }  # fmt: skip
