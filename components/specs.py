"""Container specs, computed without Pulumi.

Each function returns plain data (keyword arguments of `docker.Container`) so
tests can read exactly what the provider will be asked for. Values that are
secrets stay `Secret` (one made from a secret, like DATABASE_URL, with `Secret.derive`), and the
component passes on its `output`, never its revealed value. Values the
provider reads back in its own spelling (CPUs, healthcheck durations) are sent
in that spelling (components/provider_forms.py). The shell steps run on the
host are in components/scripts.py.
"""

from __future__ import annotations

import shlex
from typing import Any

from components.caddyfile import ADMIN_SOCKET
from components.config import RoleConfig, Secret, StackConfig
from components.provider_forms import go_duration, nano_cpus, swarm_duration

LOG_OPTS = {"max-size": "10m", "max-file": "3"}
TMPFS_MB = 64  # each writable tmpfs of a role
TMPFS_OPTIONS = f"rw,noexec,nosuid,size={TMPFS_MB}m"
HARDENING: dict[str, Any] = {
    "security_opts": ["no-new-privileges:true"],
    "capabilities": {"drops": ["ALL"]},
    "restart": "unless-stopped",
    "log_driver": "json-file",
    "log_opts": LOG_OPTS,
    "init": True,
}


def labels(cfg: StackConfig, role: str, extra: dict[str, str] | None = None) -> list[Any]:
    """Labels telling which app, stack and role a container belongs to (and which release, for web)."""
    values = {"cutover.app": cfg.app_name, "cutover.stack": cfg.stack, "cutover.role": role, **(extra or {})}
    return [{"label": k, "value": v} for k, v in sorted(values.items())]


def shared_env(cfg: StackConfig) -> list[tuple[str, str | Secret]]:
    """What every role gets: the secret env and the accessories' URLs (secrets as Secret values)."""
    env: list[tuple[str, str | Secret]] = sorted(cfg.web.secret_env.items())
    p = cfg.postgres
    if p.enabled and p.password is not None:
        env.append(("DATABASE_URL", p.password.derive(lambda pw: f"postgresql://{p.user}:{pw}@postgres:5432/{p.database}")))
    if cfg.redis.enabled and cfg.redis.password is not None:
        env.append(("REDIS_URL", cfg.redis.password.derive(lambda pw: "redis://:" + pw + "@redis:6379/0")))
    return env


def web_env(cfg: StackConfig) -> list[tuple[str, str | Secret]]:
    """The web containers' environment (APP_VERSION aside), secrets included as Secret values."""
    return [("PORT", str(cfg.web.port)), *sorted(cfg.web.env.items()), *shared_env(cfg)]


def role_env(cfg: StackConfig, role: RoleConfig) -> list[tuple[str, str | Secret]]:
    """A role's environment: its own variables, then what every role gets."""
    return [*sorted(role.env.items()), *shared_env(cfg)]


def healthcheck(cfg: StackConfig) -> dict[str, Any]:
    h = cfg.healthcheck
    return {
        "tests": h.test(),
        "interval": go_duration(h.interval),
        "timeout": go_duration(h.timeout),
        "retries": h.retries,
        "start_period": go_duration(h.start_period),
    }


def web_container(cfg: StackConfig, image_id: Any, networks: list[Any]) -> dict[str, Any]:
    """A web container: no fixed name and no host port, so a new release is created beside the old one."""
    w = cfg.web
    spec: dict[str, Any] = {
        "image": image_id,
        "user": w.user,
        "read_only": w.read_only,
        "tmpfs": dict.fromkeys(w.tmpfs, TMPFS_OPTIONS),
        "memory": w.memory_mb,
        # the limit is the limit: no swap on top (Docker would allow as much again), where the kernel accounts swap
        "memory_swap": w.memory_mb,
        "cpus": w.cpus,
        "stop_signal": "SIGTERM",
        "stop_timeout": w.stop_timeout_s,
        "destroy_grace_seconds": w.stop_timeout_s,
        "healthcheck": healthcheck(cfg),
        "wait": True,
        "wait_timeout": w.wait_timeout_s,
        "must_run": True,
        "networks_advanced": [{"name": n} for n in networks],
        **HARDENING,
    }
    if w.command:
        spec["command"] = list(w.command)
    return spec


def role_container(cfg: StackConfig, role: RoleConfig, image_id: Any, networks: list[Any]) -> dict[str, Any]:
    """A container of a role beside web: the release's image with the role's command and probe.

    A rolling role's container starts at once and is waited for until healthy, like web's. A
    single-instance role's is only created (`start` false): the go-live step stops the old one,
    then starts it and waits for its probe (components/scripts.py), so two never run at once.
    It must not be `must_run` either: Read reports a created container as not running, which
    would be a change on every update (kreuzwerker v4.5.0 resource_docker_container_funcs.go:812-824).
    """
    w, h = cfg.web, role.healthcheck
    spec: dict[str, Any] = {
        "image": image_id,
        "command": list(role.command),
        "user": w.user,
        "read_only": w.read_only,
        "tmpfs": dict.fromkeys(w.tmpfs, TMPFS_OPTIONS),
        "memory": role.memory_mb,
        "memory_swap": role.memory_mb,
        "cpus": role.cpus,
        "stop_signal": "SIGTERM",
        "stop_timeout": role.stop_timeout_s,
        "destroy_grace_seconds": role.stop_timeout_s,
        "healthcheck": {
            "tests": h.test(),
            "interval": go_duration(h.interval),
            "timeout": go_duration(h.timeout),
            "retries": h.retries,
            "start_period": go_duration(h.start_period),
        },
        "networks_advanced": [{"name": n} for n in networks],
        **HARDENING,
    }
    if role.overlap:
        spec.update({"wait": True, "wait_timeout": role.wait_timeout_s, "must_run": True})
    else:
        spec.update({"start": False, "must_run": False})
    return spec


# The ports container only holds the network namespace: the host ports and the edge network. It does
# nothing but wait (and exits at once on SIGTERM); the proxy runs in its namespace.
PORTS_HOLD = ["sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]


def ports_container(cfg: StackConfig, image_id: Any, network: Any) -> dict[str, Any]:
    """The one container bound to host ports: it holds them, and the edge network, for the proxy."""
    p = cfg.proxy
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
        "name": f"{cfg.resource_prefix}-ports",
        "command": PORTS_HOLD,
        "ports": ports,
        "read_only": True,
        "networks_advanced": [{"name": network}],
        "stop_timeout": 5,
        "destroy_grace_seconds": 10,
        "labels": labels(cfg, "ports"),
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


def keeper_socket(cfg: StackConfig) -> str:
    """The engine's socket on the server: the one `host.url` names when it is a unix:// socket (the engine is on
    the machine running Pulumi), DOCKER_SOCKET over ssh://."""
    url = cfg.host.url
    return url.removeprefix("unix://") if url.startswith("unix://") else DOCKER_SOCKET


def proxy_keeper_script(cfg: StackConfig) -> str:
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
    ports = shlex.quote(f"{cfg.resource_prefix}-ports")
    filters = " ".join(
        f"--filter {shlex.quote(f)}"
        for f in (f"label=cutover.app={cfg.app_name}", f"label=cutover.stack={cfg.stack}", "label=cutover.role=proxy")
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


def proxy_keeper_container(cfg: StackConfig, image_id: Any) -> dict[str, Any]:
    """The proxy's keeper (proxy_keeper_script): the Docker CLI with the engine's socket and no network at all,
    so that its own start depends on no other container. DOCKER_HOST is set, so an image's entrypoint (the
    official docker:cli's picks a socket or tcp://docker:2375 when it is unset) has no choice to make."""
    socket = keeper_socket(cfg)
    return {
        "image": image_id,
        "name": f"{cfg.resource_prefix}-proxy-keeper",
        "command": ["sh", "-c", proxy_keeper_script(cfg)],
        "envs": [f"DOCKER_HOST=unix://{DOCKER_SOCKET}"],
        "network_mode": "none",
        "read_only": True,
        "volumes": [{"host_path": socket, "container_path": DOCKER_SOCKET}],
        "stop_timeout": 5,
        "destroy_grace_seconds": 10,
        "labels": labels(cfg, "proxy-keeper"),
        **HARDENING,
    }  # fmt: skip


def proxy_container(cfg: StackConfig, image_id: Any, network_mode: Any, volumes: dict[str, Any]) -> dict[str, Any]:
    """Caddy, in the ports container's network namespace (network_mode `container:<its id>`): it listens on the
    ports that one holds and reaches the app over the edge network. No name: Pulumi names it (<resource>-<7 hex>)
    and names a replacement anew, so a new proxy starts beside the old one (see components/proxy.py)."""
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
        "labels": labels(cfg, "proxy"),
        **{**HARDENING, "capabilities": {"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]}},
    }  # fmt: skip


def _tmpfs_mounts(tmpfs: dict[str, str]) -> list[dict[str, Any]]:
    """A container's tmpfs (path -> options) as a service's tmpfs mounts, of the same size."""
    return [{"type": "tmpfs", "target": path, "tmpfs_options": {"size_bytes": TMPFS_MB * 1024 * 1024}} for path in sorted(tmpfs)]


def service_spec(
    cfg: StackConfig, container: dict[str, Any], replicas: int, service_labels: list[Any], network_ids: list[Any]
) -> dict[str, Any]:
    """The keyword arguments of a `docker.Service` that runs `replicas` tasks as `container` (web_container's or
    role_container's spec) would run on one host: the same image, command, user, read-only root, tmpfs, probe,
    limits, stop signal and grace period, log options and init, over the cluster's nodes.

    What a service cannot carry is left out: `no-new-privileges` (the provider's ServiceTaskSpecContainerSpec
    privileges have no such field), the host's `wait` (the service's converge_config is that wait: the
    provider returns once every task runs, and a task with a health check runs only once it is healthy,
    moby v20.10.24 daemon/cluster/executor/container/controller.go:236-280) and the restart policy (Swarm
    restarts a task on any exit by default; a policy given in part reads back as a change each update,
    pulumi-docker#1285). Endpoint mode `dnsrr`: the service name resolves to its tasks' addresses on the
    overlay network (no virtual IP, which needs IPVS in the node's kernel), and the proxy dials those.

    Read back as the provider stores them (kreuzwerker v4.5.0 resource_docker_service_structures.go):
    durations in its short form (swarm_duration), and networks by ID only (526-541; a name there would be a
    change, hence a replacement, on every update). The stop grace period is always set: unset, the provider
    sends 0, and every task would be killed at once instead of getting SIGTERM and time to finish.
    Environment variables are added by the component (they may hold secrets)."""
    c = cfg.cluster
    h = container["healthcheck"]
    container_spec: dict[str, Any] = {
        "image": container["image"],
        "user": container["user"],
        "read_only": container["read_only"],
        "mounts": _tmpfs_mounts(container.get("tmpfs", {})),
        "healthcheck": {
            "tests": h["tests"],
            "interval": swarm_duration(h["interval"]),
            "timeout": swarm_duration(h["timeout"]),
            "retries": h["retries"],
            "start_period": swarm_duration(h["start_period"]),
        },
        "stop_signal": container["stop_signal"],
        "stop_grace_period": swarm_duration(f"{container['stop_timeout']}s"),
        "cap_drops": ["ALL"],
        "init": True,
        "labels": service_labels,
    }
    if container.get("command"):
        container_spec["args"] = container["command"]  # the image's CMD, as `command` is for a container
    placement: dict[str, Any] = {"constraints": list(c.placement)}
    if c.spread:
        placement["prefs"] = [c.spread]  # each one a spread descriptor (KW service_structures.go:1390-1403)
    return {
        "labels": service_labels,
        "mode": {"replicated": {"replicas": replicas}},
        "endpoint_spec": {"mode": "dnsrr"},
        "task_spec": {
            "container_spec": container_spec,
            "resources": {"limits": {"memory_bytes": container["memory"] * 1024 * 1024, "nano_cpus": nano_cpus_of(container["cpus"])}},
            "placement": placement,
            "networks_advanceds": [{"id": n} for n in network_ids],
            "log_driver": {"name": "json-file", "options": dict(LOG_OPTS)},
        },
        "converge_config": {"delay": "1s", "timeout": swarm_duration(f"{c.converge_timeout_s}s")},
    }


def nano_cpus_of(cpus: str) -> int:
    """The config's CPU count (validated) in the service's unit, billionths of a CPU."""
    nano = nano_cpus(cpus)
    if nano is None:
        raise ValueError(f"not a CPU count: {cpus!r}")
    return nano
