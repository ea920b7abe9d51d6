"""What the docker provider stores for a container: its Read, applied to what Docker reports. Pure.

KW = kreuzwerker/terraform-provider-docker v4.5.0 internal/provider/, which pulumi-docker
bridges unpatched for containers (its two patches touch shim/ and the registry client).

Create ends with Read (resource_docker_container_funcs.go:673) and Pulumi stores what
Read returns; the next update diffs its inputs against that (plan.py). Read sets only some
fields; the others keep what the state held (the config at create): env and labels "because
they are taken over from the Docker image" (funcs.go:893-898), volumes, networks_advanced
(a dead branch, funcs.go:788-796), wait, wait_timeout, destroy_grace_seconds, must_run while
running. What it sets, for the inputs this program sends (`container_state`):

  image         the container's image ID when the state's value was an ID (funcs.go:837-845)
  name          without the leading "/" (funcs.go:828)
  user, readOnly, securityOpts, restart, stopSignal, stopTimeout, init, command (funcs.go:849-978)
  tmpfs         HostConfig.Tmpfs (funcs.go:883)
  memory        HostConfig.Memory in MB (funcs.go:932)
  memorySwap    HostConfig.MemorySwap in MB when > 0, else as is: 0, or -1 where Docker set it
                because the kernel does not account swap (funcs.go:940-944)
  cpus          nanoInt64ToDecimalString(NanoCpus) when > 0: "1" comes back "1.0" (funcs.go:946-948)
  healthcheck   test as is, durations as Go prints them ("1m" comes back "1m0s"), retries (funcs.go:960-971)
  capabilities  CapAdd / CapDrop (funcs.go:870-878)
  logDriver, logOpts  LogConfig (logOpts only when the config has some, funcs.go:951-989)
  ports         from NetworkSettings.Ports, only when the config has ports and the container runs
                or must_run is set (funcs.go:800-806): a stopped container reads back no ports
  shmSize       HostConfig.ShmSize in MB (funcs.go:945)
  mustRun       false when the container is not running (funcs.go:812-824)

Read never looks at health (funcs.go:750-981): an unhealthy container reads back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.config.provider_forms import decimal_cpus

_MB = 1024 * 1024


def go_duration_from_ns(ns: int) -> str:
    """time.Duration(ns).String() for the whole-millisecond durations Docker stores here."""
    from components.config.provider_forms import go_duration

    if ns % 1_000_000:
        raise ValueError(f"a duration of {ns}ns is not a whole number of milliseconds")
    return go_duration(f"{ns // 1_000_000}ms")


def flatten_ports(inspect: Mapping[str, Any]) -> list[dict[str, Any]]:
    """KW flattenContainerPorts (resource_docker_container_structures.go:35-59): one entry per binding."""
    ports = ((inspect.get("NetworkSettings") or {}).get("Ports")) or {}
    out = []
    for key in sorted(ports, key=lambda k: int(k.split("/")[0])):
        internal, protocol = key.split("/")
        for binding in ports[key] or []:
            out.append({"internal": int(internal), "external": int(binding["HostPort"]), "ip": binding["HostIp"], "protocol": protocol})
    return out


def container_state(inspect: Mapping[str, Any], prior: Mapping[str, Any]) -> dict[str, Any]:
    """The state Read leaves: `prior` (the config at create, or the state before a refresh) with what Read sets."""
    config, host, state = inspect.get("Config") or {}, inspect.get("HostConfig") or {}, inspect.get("State") or {}
    out = dict(prior)
    out["image"] = inspect.get("Image") if str(prior.get("image", "")).startswith("sha256:") else config.get("Image")
    out["name"] = str(inspect.get("Name", "")).lstrip("/")
    if config.get("User") or "user" in prior:
        out["user"] = config.get("User", "")
    out["readOnly"] = bool(host.get("ReadonlyRootfs"))
    if host.get("SecurityOpt") is not None or "securityOpts" in prior:
        out["securityOpts"] = list(host.get("SecurityOpt") or [])
    out["restart"] = (host.get("RestartPolicy") or {}).get("Name") or "no"
    if config.get("StopSignal") or "stopSignal" in prior:
        out["stopSignal"] = config.get("StopSignal")
    if config.get("StopTimeout") is not None or "stopTimeout" in prior:
        out["stopTimeout"] = config.get("StopTimeout")
    if "networkMode" in prior:  # KW funcs.go:954: d.Set("network_mode", container.HostConfig.NetworkMode)
        out["networkMode"] = host.get("NetworkMode")
    if host.get("Init") is not None:
        out["init"] = bool(host["Init"])
    if config.get("Cmd") is not None:
        out["command"] = list(config["Cmd"])
    out["tmpfs"] = dict(host.get("Tmpfs") or {})
    out["memory"] = int(host.get("Memory") or 0) // _MB
    swap = int(host.get("MemorySwap") or 0)
    out["memorySwap"] = swap // _MB if swap > 0 else swap
    if int(host.get("NanoCpus") or 0) > 0:
        out["cpus"] = decimal_cpus(int(host["NanoCpus"]))
    hc = config.get("Healthcheck")
    if hc:
        out["healthcheck"] = {
            "tests": list(hc.get("Test") or []),
            "interval": go_duration_from_ns(int(hc.get("Interval") or 0)),
            "timeout": go_duration_from_ns(int(hc.get("Timeout") or 0)),
            "startPeriod": go_duration_from_ns(int(hc.get("StartPeriod") or 0)),
            "startInterval": go_duration_from_ns(int(hc.get("StartInterval") or 0)),
            "retries": int(hc.get("Retries") or 0),
        }
    caps = {k: sorted(host.get(api) or []) for k, api in (("adds", "CapAdd"), ("drops", "CapDrop")) if host.get(api)}
    if caps or "capabilities" in prior:
        out["capabilities"] = caps
    log = host.get("LogConfig") or {}
    if log.get("Type"):
        out["logDriver"] = log["Type"]
    if prior.get("logOpts"):
        out["logOpts"] = dict(log.get("Config") or {})
    running = bool(state.get("Running"))
    if prior.get("ports") and (running or prior.get("mustRun", True)):
        out["ports"] = flatten_ports(inspect)
    if int(host.get("ShmSize") or 0) and ("shmSize" in prior):
        out["shmSize"] = int(host["ShmSize"]) // _MB
    if not running and prior.get("mustRun", True):
        out["mustRun"] = False
    return out


# --------------------------------------------------------------------------- docker_service


def short_duration_from_ns(ns: int) -> str:
    """KW shortDur (resource_docker_service_structures.go:1341-1350): Go's Duration.String(), then a trailing
    "m0s" loses its "0s" and a trailing "h0m" its "0m"."""
    text = go_duration_from_ns(ns)
    if text.endswith("m0s"):
        text = text[:-2]
    if text.endswith("h0m"):
        text = text[:-2]
    return text


def _label_list(labels: Mapping[str, str] | None) -> list[dict[str, str]]:
    return [{"label": k, "value": v} for k, v in sorted((labels or {}).items())]


def service_state(info: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """What Read stores for a service (KW resource_docker_service_funcs.go:83-167, flattened by
    resource_docker_service_structures.go:21-590), for the fields this program sets, from what the daemon
    reports (GET /services/<id>): durations in the short form, env as a map, labels as lists, tmpfs mounts with
    their size and mode, limits, the placement with the platforms Create wrote, networks by ID only (S:526-541),
    the replicas and the endpoint mode. `auth` and `converge_config` are never read (the config's stay)."""
    spec = info.get("Spec") or {}
    task = spec.get("TaskTemplate") or {}
    c = task.get("ContainerSpec") or {}
    hc = c.get("Healthcheck") or {}
    container: dict[str, Any] = {
        "image": c.get("Image", ""),
        "args": list(c.get("Args") or []),
        "command": list(c.get("Command") or []),
        "env": dict(line.split("=", 1) for line in c.get("Env") or []),
        "labels": _label_list(c.get("Labels")),
        "user": c.get("User", ""),
        "readOnly": bool(c.get("ReadOnly")),
        "mounts": [
            {
                "type": m.get("Type", ""),
                "target": m.get("Target", ""),
                "tmpfsOptions": {
                    "sizeBytes": (m.get("TmpfsOptions") or {}).get("SizeBytes", 0),
                    "mode": (m.get("TmpfsOptions") or {}).get("Mode", 0) & 0o777,
                },
            }
            for m in c.get("Mounts") or []
        ],
        "healthcheck": {
            "tests": list(hc.get("Test") or []),
            "interval": short_duration_from_ns(hc.get("Interval") or 0),
            "timeout": short_duration_from_ns(hc.get("Timeout") or 0),
            "startPeriod": short_duration_from_ns(hc.get("StartPeriod") or 0),
            "retries": hc.get("Retries", 0),
        },
        "stopSignal": c.get("StopSignal", ""),
        "stopGracePeriod": short_duration_from_ns(c.get("StopGracePeriod") or 0),
        "capDrops": list(c.get("CapabilityDrop") or []),
        "init": bool(c.get("Init")),
    }
    limits = (task.get("Resources") or {}).get("Limits") or {}
    placement = task.get("Placement") or {}
    task_state: dict[str, Any] = {
        "containerSpec": container,
        "resources": {"limits": {"nanoCpus": limits.get("NanoCPUs", 0), "memoryBytes": limits.get("MemoryBytes", 0)}},
        "placement": {
            "constraints": list(placement.get("Constraints") or []),
            "prefs": [p["Spread"]["SpreadDescriptor"] for p in placement.get("Preferences") or [] if p.get("Spread")],
            "platforms": [{"architecture": p.get("Architecture", ""), "os": p.get("OS", "")} for p in placement.get("Platforms") or []],
        },
        "networksAdvanceds": [{"id": n.get("Target", ""), "aliases": [], "driverOpts": []} for n in task.get("Networks") or []],
    }
    if task.get("LogDriver"):
        task_state["logDriver"] = {"name": task["LogDriver"].get("Name", ""), "options": dict(task["LogDriver"].get("Options") or {})}
    endpoint = (info.get("Endpoint") or {}).get("Spec") or spec.get("EndpointSpec") or {}
    state: dict[str, Any] = {
        **{k: v for k, v in config.items() if k in ("auth", "convergeConfig")},
        "name": spec.get("Name", ""),
        "labels": _label_list(spec.get("Labels")),
        "mode": {"replicated": {"replicas": ((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 0)}},
        "endpointSpec": {"mode": endpoint.get("Mode", "")},
        "taskSpec": task_state,
    }
    return state
