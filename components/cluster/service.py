"""A role's Swarm service, computed without Pulumi: what a container spec becomes on a cluster.

Plain data (keyword arguments of `docker.Service`) that components/cluster/workload.py declares.
"""

from __future__ import annotations

from typing import Any

from components.config.model import ClusterConfig
from components.config.provider_forms import nano_cpus, swarm_duration
from components.host.containers import LOG_OPTS, TMPFS_MB


def _tmpfs_mounts(tmpfs: dict[str, str]) -> list[dict[str, Any]]:
    """A container's tmpfs (path -> options) as a service's tmpfs mounts, of the same size."""
    return [{"type": "tmpfs", "target": path, "tmpfs_options": {"size_bytes": TMPFS_MB * 1024 * 1024}} for path in sorted(tmpfs)]


def service_spec(
    cluster: ClusterConfig, container: dict[str, Any], replicas: int, service_labels: list[Any], network_ids: list[Any]
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
    c = cluster
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
