"""The providers' operations, done for real: pulumi-docker against a Docker engine, pulumi-command over ssh.

Each operation does what the provider's own code does, in its order, with its error texts
(KW = kreuzwerker/terraform-provider-docker v4.5.0 internal/provider/, bridged by
pulumi-docker; PD = pulumi-docker 237b7899 provider/; PC = pulumi-command v1.2.1
provider/pkg/provider/):

docker_container Create (KW resource_docker_container_funcs.go:43-674): ContainerCreate on the
  "bridge" network with no endpoint config (:391), the ID kept at once (:460), "bridge"
  disconnected and each networks_advanced entry connected with its aliases (:463-503), start
  (:584-588), then, with `wait`, ContainerInspect once a second until Health.Status is
  "healthy"; "unhealthy" does not end the wait; after wait_timeout the error is "container
  failed to be in healthy state" (:590-628). Without `start` it is only created. must_run
  plays no part in Create. A failure after
  the ID was kept leaves the container, which the bridge reports as an init error with the
  state (TB provider.go:1370-1413): `StepError.partial`.
docker_container Update (:991-1077): one ContainerUpdate when restart or resources changed
  (restart, memory, memory_swap, ...); every other in-place change is stored and not applied.
docker_container Delete (:1079-1131): ContainerStop with destroy_grace_seconds (0 when unset),
  then ContainerRemove with force; a container already gone is not an error.
docker_image (RemoteImage) Create: ImageInspect, and a pull with the provider's registry_auth
  only when missing (KW resource_docker_image_funcs.go:249-378); Delete removes the image
  unless keep_locally (:187-193).
docker.Image (native): a BuildKit build of the context, then a push; repoDigest is
  repo@digest from the push, or the image ID without a push (PD image.go:272-353); Delete
  does nothing (PD provider.go:488-495). The build here uses the docker CLI (`buildx build
  --load`), which drives the same daemon BuildKit the provider's Engine API call does.
Provider Configure (PD provider.go:80-104, image.go:931-992): the native half pings the
  engine unless the host is ssh://, then "failed to connect to any docker daemon"; the
  bridged half pings lazily, on the first operation that needs a client: "Error pinging
  Docker server, please make sure that HOST is reachable and has a  '_ping' endpoint"
  (KW config.go:193-199).
command (PC remote/commandController.go, remote/commandOutputs.go, remote/connection.go): the
  script runs in the login shell; stdin is attached only when not empty; a failure is
  "Process exited with status N: running "<script>":\\n<stdout and stderr>"; the connection
  offers the pinned host key's algorithm only, logs in with the key given inline and the
  keys of the agent at SSH_AUTH_SOCK, and fails when SSH_AUTH_SOCK names no agent.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.e2e.replay.docker_api import DockerAPI, DockerAPIError
from tests.e2e.replay.plan import container_config
from tests.e2e.replay.readback import container_state, go_duration_from_ns, service_state
from tests.harness import ROOT

HEALTH_POLL_S = 1.0  # KW funcs.go:590-628: one ContainerInspect a second while waiting for "healthy"
HEALTH_TIMEOUT_MESSAGE = "container failed to be in healthy state"  # KW funcs.go:40


class ProviderError(RuntimeError):
    """An operation failed. `partial` holds the resource when it exists anyway (an init error)."""

    def __init__(self, message: str, partial: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.partial = partial


def _check_keys(what: str, value: Mapping[str, Any], allowed: set[str] | frozenset[str]) -> None:
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ProviderError(f"{what}: input(s) {unknown} are not translated by tests/e2e/replay; teach it what the provider does with them")


def _int(v: Any) -> int:
    return int(v) if v is not None else 0


def _provider_value(v: Any) -> Any:
    """Provider inputs travel JSON-encoded when they are not strings."""
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def go_duration_ns(value: str) -> int:
    """Go's time.ParseDuration for the durations the program sends ('1m30s', '500ms')."""
    units = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
    value = value.strip()
    if value in ("", "0"):
        return 0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ProviderError(f"not a Go duration: {value!r}")
    return int(sum(float(n) * units[u] for n, u in parts))


def run(
    argv: list[str], *, input: str | None = None, env: Mapping[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProviderError(f"timed out after {timeout}s: {shlex.join(argv[:6])} ...") from exc


# --------------------------------------------------------------------------- the docker provider's configuration


@dataclasses.dataclass
class DockerProvider:
    api: DockerAPI
    registry_auth: dict[str, dict[str, str]]
    pinged: bool = False

    def client(self) -> DockerAPI:
        """The bridged half's client: pinged on first use (KW config.go:193-199)."""
        if not self.pinged:
            try:
                self.api.ping()
            except DockerAPIError as exc:
                raise ProviderError(
                    f"Error pinging Docker server, please make sure that {self.api.url} is reachable and has a  '_ping' endpoint. Error: {exc}"
                ) from exc
            self.pinged = True
        return self.api


def configure_docker(inputs: Mapping[str, Any], env: Mapping[str, str]) -> DockerProvider:
    """Configure, as PD's hybrid provider does it: the host from the inputs, else DOCKER_HOST, else the default
    socket (PD provider.go:688-700); the native half pings unless the host is ssh:// (image.go:944-992)."""
    _check_keys("docker provider", inputs, {"host", "sshOpts", "registryAuth", "version"})
    explicit = inputs.get("host") or env.get("DOCKER_HOST")
    host = explicit or "unix:///var/run/docker.sock"
    ssh_opts = _provider_value(inputs.get("sshOpts")) or []
    auth: dict[str, dict[str, str]] = {}
    for entry in _provider_value(inputs.get("registryAuth")) or []:
        _check_keys("docker provider registryAuth", entry, {"address", "username", "password"})
        auth[entry["address"]] = {"username": entry.get("username", ""), "password": entry.get("password", "")}
    api = DockerAPI(host, ssh_opts, env)
    if api.is_ssh:
        return DockerProvider(api, auth)  # "Skip checking connection for SSH" (image.go:944-952)
    candidates = [api]
    if not explicit:
        home = env.get("HOME", "")
        candidates += [DockerAPI(f"unix://{home}/.docker/run/docker.sock"), DockerAPI(f"unix://{home}/.docker/desktop/docker.sock")]
    for candidate in candidates:
        with contextlib.suppress(DockerAPIError):
            candidate.ping()
            return DockerProvider(candidate, auth, pinged=True)
    raise ProviderError("docker native provider returned an unexpected error from Configure: failed to connect to any docker daemon")


def registry_auth_header(provider: DockerProvider, ref: str) -> str | None:
    first = ref.split("/", 1)[0]
    registry = first if "/" in ref and ("." in first or ":" in first) else "docker.io"
    creds = provider.registry_auth.get(registry)
    if not creds:
        return None
    blob = json.dumps({"username": creds["username"], "password": creds["password"], "serveraddress": registry})
    return base64.urlsafe_b64encode(blob.encode()).decode()


# --------------------------------------------------------------------------- docker_container

CONTAINER_INPUTS = frozenset(
    {
        "image", "name", "user", "readOnly", "tmpfs", "memory", "memorySwap", "cpus", "stopSignal", "stopTimeout",
        "destroyGraceSeconds", "healthcheck", "wait", "waitTimeout", "mustRun", "networksAdvanced",
        "labels", "envs", "command", "capabilities", "securityOpts", "restart", "logDriver", "logOpts",
        "init", "ports", "volumes", "shmSize", "start", "networkMode",
    }
)  # fmt: skip


def container_create_body(name: str, inp: Mapping[str, Any]) -> dict[str, Any]:
    """The ContainerCreate body the provider sends (KW funcs.go:55-458): on "bridge", networks connected later."""
    _check_keys(f"{name} (Container)", inp, CONTAINER_INPUTS)
    config: dict[str, Any] = {"Image": inp["image"], "Env": list(inp.get("envs") or [])}
    # network_mode, "bridge" by default (KW resource_docker_container.go:901-907, funcs.go:392-399); a container
    # created in another's namespace ("container:<id>") gets no networks of its own
    host: dict[str, Any] = {"NetworkMode": inp.get("networkMode") or "bridge"}
    config["Labels"] = {entry["label"]: entry["value"] for entry in inp.get("labels") or []}
    if inp.get("command"):
        config["Cmd"] = list(inp["command"])
    if inp.get("user"):
        config["User"] = inp["user"]
    if inp.get("stopSignal"):
        config["StopSignal"] = inp["stopSignal"]
    if inp.get("stopTimeout") is not None:
        config["StopTimeout"] = _int(inp["stopTimeout"])
    hc = inp.get("healthcheck")
    if hc:
        _check_keys(f"{name} healthcheck", hc, {"tests", "interval", "timeout", "startPeriod", "retries"})
        config["Healthcheck"] = {
            "Test": list(hc["tests"]),  # exec form kept as is: ["CMD", argv...]
            "Interval": go_duration_ns(hc.get("interval", "0s")),
            "Timeout": go_duration_ns(hc.get("timeout", "0s")),
            "StartPeriod": go_duration_ns(hc.get("startPeriod", "0s")),
            "Retries": _int(hc.get("retries", 0)),
        }
    if inp.get("readOnly") is not None:
        host["ReadonlyRootfs"] = bool(inp["readOnly"])
    if inp.get("tmpfs"):
        host["Tmpfs"] = dict(inp["tmpfs"])
    if inp.get("memory"):
        host["Memory"] = _int(inp["memory"]) * 1024 * 1024  # MB (KW funcs.go:334-336)
    if inp.get("memorySwap"):
        swap = _int(inp["memorySwap"])
        host["MemorySwap"] = swap * 1024 * 1024 if swap > 0 else swap  # KW funcs.go:342-348
    if inp.get("cpus"):
        host["NanoCpus"] = round(float(inp["cpus"]) * 1e9)
    caps = inp.get("capabilities") or {}
    _check_keys(f"{name} capabilities", caps, {"adds", "drops"})
    if caps.get("adds"):
        host["CapAdd"] = list(caps["adds"])
    if caps.get("drops"):
        host["CapDrop"] = list(caps["drops"])
    if inp.get("securityOpts"):
        host["SecurityOpt"] = list(inp["securityOpts"])
    if inp.get("restart"):
        host["RestartPolicy"] = {"Name": inp["restart"], "MaximumRetryCount": 0}
    if inp.get("logDriver"):
        host["LogConfig"] = {"Type": inp["logDriver"], "Config": dict(inp.get("logOpts") or {})}
    elif inp.get("logOpts"):
        raise ProviderError(f"{name}: logOpts without logDriver")
    if inp.get("init") is not None:
        host["Init"] = bool(inp["init"])
    if inp.get("shmSize"):
        host["ShmSize"] = _int(inp["shmSize"]) * 1024 * 1024
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in inp.get("ports") or []:
        _check_keys(f"{name} ports", port, {"internal", "external", "ip", "protocol"})
        key = f"{_int(port['internal'])}/{port.get('protocol') or 'tcp'}"
        exposed[key] = {}
        # KW resource_docker_container_structures.go:228-258: HostIP is the `ip` field, "0.0.0.0" by default
        # (resource_docker_container.go:509-523), and Docker then binds IPv4 only (moby libnetwork
        # drivers/bridge/port_mapping_linux.go:354-357).
        bindings.setdefault(key, []).append(
            {"HostIp": port.get("ip") or "0.0.0.0", "HostPort": str(_int(port["external"])) if port.get("external") else ""}
        )
    if exposed:
        config["ExposedPorts"] = exposed
        host["PortBindings"] = bindings
    binds = []
    for vol in inp.get("volumes") or []:
        _check_keys(f"{name} volumes", vol, {"volumeName", "containerPath", "readOnly", "hostPath"})
        source = vol.get("volumeName") or vol.get("hostPath")
        if not source:
            raise ProviderError(f"{name}: anonymous volumes are not translated")
        binds.append(f"{source}:{vol['containerPath']}" + (":ro" if vol.get("readOnly") else ":rw"))
    if binds:
        host["Binds"] = binds
    for net in inp.get("networksAdvanced") or []:
        _check_keys(f"{name} networksAdvanced", net, {"name", "aliases"})
    return {**config, "HostConfig": host, "NetworkingConfig": {}}


def container_create(provider: DockerProvider, urn_name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(id, state); raises ProviderError with `partial` when the container exists but the create failed."""
    api = provider.client()
    name = inputs.get("name") or f"{urn_name}-{secrets.token_hex(4)[:7]}"  # the bridge's autoname: <name>-<7 hex> (PD resources.go:404)
    body = container_create_body(urn_name, inputs)
    created = api.call("POST", "/containers/create", body, query={"name": name})
    cid = created["Id"]
    config = {**inputs, "name": name}
    try:
        if inputs.get("networksAdvanced"):
            status, data = api.request("POST", "/networks/bridge/disconnect", {"Container": cid, "Force": False})
            if status not in (200, 204) and "is not connected to the network bridge" not in str(data):
                raise ProviderError(f"Unable to disconnect the default network: {data}")
            for net in inputs["networksAdvanced"]:
                api.call(
                    "POST",
                    f"/networks/{urllib.parse.quote(net['name'], safe='')}/connect",
                    {"Container": cid, "EndpointConfig": {"Aliases": list(net.get("aliases") or [])}},
                )
        if inputs.get("start", True):  # KW funcs.go:584-628: started, and waited for, only with `start`
            api.call("POST", f"/containers/{cid}/start", ok=(204, 304))
            if inputs.get("wait"):
                wait_healthy(api, cid, _int(inputs.get("waitTimeout") or 60))
    except (ProviderError, DockerAPIError) as exc:
        # Create returns before its closing Read: the state is the planned one, the config with the ID
        raise ProviderError(str(exc), partial={"id": cid, "state": container_config(config)}) from exc
    return cid, container_state(api.inspect_container(cid) or {}, config)


def wait_healthy(api: DockerAPI, cid: str, timeout_s: int) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = api.inspect_container(cid) or {}
        health = (info.get("State") or {}).get("Health")
        if health is None:  # KW funcs.go:598-600
            raise ProviderError(
                "you have supplied a 'wait' argument, but the container does not have a healthcheck defined."
                " Please remove the 'wait' argument or add a 'healthcheck' attribute"
            )
        if health.get("Status") == "healthy":
            return
        time.sleep(min(HEALTH_POLL_S, max(0.0, deadline - time.monotonic())))
    raise ProviderError(HEALTH_TIMEOUT_MESSAGE)


def container_update(provider: DockerProvider, cid: str, old_state: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """KW Update: restart policy and resources in place; any other change is only stored."""
    _check_keys("Container", inputs, CONTAINER_INPUTS)
    body: dict[str, Any] = {}
    if inputs.get("restart") != old_state.get("restart"):
        body["RestartPolicy"] = {"Name": inputs.get("restart") or "no", "MaximumRetryCount": 0}
    if _int(inputs.get("memory")) != _int(old_state.get("memory")):
        body["Memory"] = _int(inputs.get("memory")) * 1024 * 1024
    if inputs.get("memorySwap") is not None and _int(inputs.get("memorySwap")) != _int(old_state.get("memorySwap")):
        body["MemorySwap"] = _int(inputs["memorySwap"]) * 1024 * 1024
    if body:
        try:
            provider.client().call("POST", f"/containers/{cid}/update", body)
        except DockerAPIError as exc:
            raise ProviderError(f"Unable to update a container: {exc}") from exc
    # Update never calls Read: the state becomes the config (KW funcs.go:1076)
    return {**old_state, **inputs, "name": old_state.get("name")}


def container_delete(provider: DockerProvider, cid: str, state: Mapping[str, Any]) -> None:
    api = provider.client()
    grace = _int(state.get("destroyGraceSeconds"))
    status, data = api.request("POST", f"/containers/{cid}/stop", query={"t": grace}, timeout=grace + 60)
    if status not in (204, 304, 404):
        raise ProviderError(f"Error stopping container {cid}: {data}")
    api.call("DELETE", f"/containers/{cid}", query={"force": "true", "v": "true"}, ok=(204, 404, 409))


def container_read(provider: DockerProvider, cid: str, state: Mapping[str, Any]) -> dict[str, Any] | None:
    """Read on refresh: None when the container is gone (KW funcs.go:769-773), else the state Read leaves."""
    info = provider.client().inspect_container(cid)
    return None if info is None else container_state(info, state)


# --------------------------------------------------------------------------- docker_service (KW resource_docker_service_*.go)

SERVICE_INPUTS = frozenset({"name", "labels", "mode", "endpointSpec", "taskSpec", "convergeConfig", "auth"})
TASK_SPEC_INPUTS = frozenset({"containerSpec", "resources", "placement", "networksAdvanceds", "logDriver", "restartPolicy"})
SERVICE_CONTAINER_INPUTS = frozenset(
    {
        "image",
        "args",
        "command",
        "env",
        "labels",
        "user",
        "readOnly",
        "mounts",
        "healthcheck",
        "stopSignal",
        "stopGracePeriod",
        "capDrops",
        "init",
    }
)
CONVERGE_DELAY_DEFAULT = "7s"  # KW resource_docker_service.go:971-977
CONVERGE_TIMEOUT_DEFAULT = "3m"  # :978-984
CONVERGE_MIN_POLL_S = 5.0  # SDK helper/retry/state.go:185-201: 100ms doubling, at least MinTimeout (5s), at most 10s
CONVERGE_MAX_POLL_S = 10.0
# SDK helper/retry/state.go:12: a refresh still running at the timeout gets this long to finish
REFRESH_GRACE_S = 30.0


def _labels(entries: Any) -> dict[str, str]:
    return {e["label"]: e["value"] for e in entries or []}


def service_spec_body(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The ServiceSpec createServiceSpec builds (KW resource_docker_service_structures.go:589-1110): the
    container spec's env map as NAME=value lines (:729), labels as maps, durations in nanoseconds, networks
    by what `id` (else `name`) says, which the daemon resolves to an ID (moby daemon/cluster/networks.go:304-333)."""
    _check_keys("Service", inputs, SERVICE_INPUTS)
    task = inputs["taskSpec"]
    _check_keys("Service taskSpec", task, TASK_SPEC_INPUTS)
    c = task["containerSpec"]
    _check_keys("Service containerSpec", c, SERVICE_CONTAINER_INPUTS)
    spec: dict[str, Any] = {"Image": c["image"], "Labels": _labels(c.get("labels")), "Init": c.get("init")}
    if c.get("command"):
        spec["Command"] = list(c["command"])
    if c.get("args"):
        spec["Args"] = list(c["args"])
    spec["Env"] = [f"{k}={v}" for k, v in (c.get("env") or {}).items()]
    for key, api in (("user", "User"), ("readOnly", "ReadOnly"), ("stopSignal", "StopSignal")):
        if c.get(key) is not None:
            spec[api] = c[key]
    # unset, the provider sends 0 (S:880-883): no grace at all
    spec["StopGracePeriod"] = go_duration_ns(c.get("stopGracePeriod") or "0s")
    if c.get("capDrops"):
        spec["CapabilityDrop"] = list(c["capDrops"])
    hc = c.get("healthcheck") or {}
    spec["Healthcheck"] = {
        "Test": list(hc.get("tests") or []),
        "Interval": go_duration_ns(hc.get("interval") or "0s"),
        "Timeout": go_duration_ns(hc.get("timeout") or "0s"),
        "StartPeriod": go_duration_ns(hc.get("startPeriod") or "0s"),
        "Retries": _int(hc.get("retries")),
    }
    mounts = []
    for m in c.get("mounts") or []:
        if m["type"] != "tmpfs":
            raise ProviderError(f"replay: only tmpfs mounts are modelled, got {m}")
        mounts.append(
            {"Type": "tmpfs", "Target": m["target"], "TmpfsOptions": {"SizeBytes": _int((m.get("tmpfsOptions") or {}).get("sizeBytes"))}}
        )
    spec["Mounts"] = mounts
    limits = (task.get("resources") or {}).get("limits") or {}
    placement = task.get("placement") or {}
    template: dict[str, Any] = {
        "ContainerSpec": spec,
        "Resources": {"Limits": {"NanoCPUs": _int(limits.get("nanoCpus")), "MemoryBytes": _int(limits.get("memoryBytes"))}},
        "Placement": {
            "Constraints": list(placement.get("constraints") or []),
            "Preferences": [{"Spread": {"SpreadDescriptor": p}} for p in placement.get("prefs") or []],
        },
        "Networks": [
            {"Target": n.get("id") or n.get("name"), "Aliases": list(n.get("aliases") or [])} for n in task.get("networksAdvanceds") or []
        ],
    }
    if task.get("logDriver"):
        template["LogDriver"] = {"Name": task["logDriver"]["name"], "Options": dict(task["logDriver"].get("options") or {})}
    if task.get("restartPolicy"):
        raise ProviderError("replay: a service restart policy is not modelled")
    replicas = ((inputs.get("mode") or {}).get("replicated") or {}).get("replicas", 1)
    return {
        "Labels": _labels(inputs.get("labels")),
        "TaskTemplate": template,
        "Mode": {"Replicated": {"Replicas": _int(replicas)}},
        "EndpointSpec": {"Mode": (inputs.get("endpointSpec") or {}).get("mode") or ""},
    }


def service_auth_header(provider: DockerProvider, inputs: Mapping[str, Any]) -> str:
    """retrieveAndMarshalAuth (KW resource_docker_service_funcs.go:604-661): the resource's `auth` when it has a
    username and a password, else the provider's registry_auth for the image's registry; base64url JSON,
    "{}" when none (sent as X-Registry-Auth, as `--with-registry-auth`)."""
    auth = inputs.get("auth") or {}
    if auth.get("username") and auth.get("password"):
        blob = {"username": auth["username"], "password": auth["password"], "serveraddress": auth.get("serverAddress", "")}
    else:
        image = inputs["taskSpec"]["containerSpec"]["image"]
        creds = provider.registry_auth.get(image.split("/", 1)[0]) if "/" in image else None
        blob = {"username": creds["username"], "password": creds["password"], "serveraddress": image.split("/", 1)[0]} if creds else {}
    return base64.urlsafe_b64encode(json.dumps(blob).encode()).decode()


def pin_to_registry(api: DockerAPI, body: dict[str, Any], auth: str) -> None:
    """What the docker client does on ServiceCreate with QueryRegistry (docker/docker client v28.5.2
    service_create.go:45-54, 88-166; KW F:45 sets it): the image is asked for at the registry
    (GET /distribution/<ref>/json, with the login), pinned to the digest it reports, and the manifest's
    platforms become the placement's; when the registry cannot be asked, the spec goes as it is."""
    spec = body["TaskTemplate"]["ContainerSpec"]
    image = spec["Image"]
    status, info = api.request("GET", f"/distribution/{urllib.parse.quote(image, safe='')}/json", headers={"X-Registry-Auth": auth})
    if status != 200 or not isinstance(info, dict):
        return
    digest = (info.get("Descriptor") or {}).get("digest")
    if digest and "@" not in image:
        spec["Image"] = f"{image}@{digest}"
    platforms = [{"Architecture": p.get("architecture", ""), "OS": p.get("os", "")} for p in info.get("Platforms") or []]
    if platforms:
        body["TaskTemplate"]["Placement"]["Platforms"] = platforms


def running_tasks(api: DockerAPI, service_id: str, replicas: int) -> int:
    """replicatedConsoleLogUpdater's count (KW F:510-595): the service's tasks whose desired state is running,
    one per slot (the lowest desired state, then the lowest observed state), on nodes that are not down,
    counted when their state is "running"."""
    filters = json.dumps({"service": [service_id], "desired-state": ["running"]})
    tasks = api.call("GET", "/tasks", query={"filters": filters}) or []
    down = {n["ID"] for n in api.call("GET", "/nodes") or [] if (n.get("Status") or {}).get("State") == "down"}
    order = [
        "new",
        "pending",
        "assigned",
        "accepted",
        "preparing",
        "ready",
        "starting",
        "running",
        "complete",
        "shutdown",
        "failed",
        "rejected",
        "remove",
        "orphaned",
    ]
    by_slot: dict[int, dict[str, Any]] = {}
    for t in tasks:
        if t.get("NodeID") in down:
            continue
        state = (t.get("Status") or {}).get("State", "")
        if state not in order:
            continue
        slot = _int(t.get("Slot"))
        kept = by_slot.get(slot)
        if kept is None or order.index(state) < order.index((kept.get("Status") or {}).get("State", "")):
            by_slot[slot] = t
    return sum(1 for t in by_slot.values() if (t.get("Status") or {}).get("State") == "running")


def service_create(provider: DockerProvider, urn_name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """resourceDockerServiceCreate (KW F:31-81): ServiceCreate, then, with converge_config, wait until every
    replica runs (a task with a health check runs only once healthy). A service that does not converge is
    deleted by the provider and nothing is stored: the error is "Service with ID (<id>) did not converge
    after <timeout>" (F:66-76, 350-355; the ID is set only after the wait, F:79)."""
    api = provider.client()
    name = inputs.get("name") or f"{urn_name}-{secrets.token_hex(4)[:7]}"  # autonamed (PD resources.go:404)
    body = {"Name": name, **service_spec_body(inputs)}
    auth = service_auth_header(provider, inputs)
    pin_to_registry(api, body, auth)
    created = api.call("POST", "/services/create", body, headers={"X-Registry-Auth": auth})
    sid = created["ID"]
    converge = inputs.get("convergeConfig")
    if converge is not None:
        replicas = body["Mode"]["Replicated"]["Replicas"]
        timeout = go_duration_ns(converge.get("timeout") or CONVERGE_TIMEOUT_DEFAULT) / 1e9
        time.sleep(go_duration_ns(converge.get("delay") or CONVERGE_DELAY_DEFAULT) / 1e9)
        started, wait = time.monotonic(), 0.1
        while running_tasks(api, sid, replicas) != replicas:
            wait = min(max(wait * 2, CONVERGE_MIN_POLL_S), CONVERGE_MAX_POLL_S)
            if time.monotonic() - started + wait > timeout:
                # not in the provider's message: why, for whoever reads the test's log
                tasks = api.call("GET", "/tasks", query={"filters": json.dumps({"service": [sid]})}) or []
                why = sorted({f"{(t.get('Status') or {}).get('State')}: {(t.get('Status') or {}).get('Err', '')}" for t in tasks})
                print(f"[replay] service {name} did not converge; its tasks: {why}", file=sys.stderr, flush=True)
                state = {"taskSpec": inputs["taskSpec"], "name": name}
                service_delete(provider, sid, state)
                # DidNotConvergeError prints the timeout as a time.Duration (F:350-355): "3m0s", "30s"
                shown = go_duration_from_ns(go_duration_ns(converge.get("timeout") or CONVERGE_TIMEOUT_DEFAULT))
                raise ProviderError(f"Service with ID ({sid}) did not converge after {shown}")
            time.sleep(wait)
    return sid, service_read(api, sid, {**inputs, "name": name})


def service_read(api: DockerAPI, sid: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Read (KW F:83-167): what the daemon reports, as the provider stores it (readback.service_state)."""
    return {**service_state(api.call("GET", f"/services/{sid}"), config), "id": sid}


def service_refresh(provider: DockerProvider, sid: str, state: Mapping[str, Any]) -> dict[str, Any] | None:
    """Read on refresh: None when the service is gone (KW F:118-121), else what Read stores."""
    api = provider.client()
    status, _ = api.request("GET", f"/services/{sid}")
    if status == 404:
        return None
    return service_read(api, sid, {k: v for k, v in state.items() if k != "id"})


def service_delete(provider: DockerProvider, sid: str, state: Mapping[str, Any]) -> None:
    """deleteService (KW F:261-337): with a stop grace period, the containers of the service's tasks not yet
    shut down are noted (on the node the provider talks to; others answer "No such container"), the service
    removed, then each container waited for until removed, up to the grace period each, and removed by force."""
    api = provider.client()
    grace = (state.get("taskSpec") or {}).get("containerSpec", {}).get("stopGracePeriod")
    containers: list[str] = []
    if grace and grace != "0s":
        tasks = api.call("GET", "/tasks", query={"filters": json.dumps({"service": [state.get("name") or sid]})}) or []
        containers = [
            (t.get("Status") or {}).get("ContainerStatus", {}).get("ContainerID", "")
            for t in tasks
            if (t.get("Status") or {}).get("State") != "shutdown"
        ]
    status, data = api.request("DELETE", f"/services/{sid}")
    if status not in (200, 204):
        raise ProviderError(f"Error deleting service with ID '{sid}': {data}")
    for cid in filter(None, containers):
        seconds = go_duration_ns(str(grace)) / 1e9
        try:
            status, data = api.request("POST", f"/containers/{cid}/wait", query={"condition": "removed"}, timeout=seconds)
        except DockerAPIError as exc:
            raise ProviderError(f"error on wait for container with ID '{cid}': {exc}") from exc
        if status not in (200, 404) and "No such container" not in str(data):
            raise ProviderError(f"error on wait for container with ID '{cid}': {data}")
        api.request("DELETE", f"/containers/{cid}", query={"force": "true", "v": "true"})


# --------------------------------------------------------------------------- networks, volumes, remote images


def network_create(provider: DockerProvider, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    _check_keys("Network", inputs, {"name", "driver", "labels", "internal", "attachable", "options"})
    body = {
        "Name": inputs["name"],
        "CheckDuplicate": True,
        "Driver": inputs.get("driver") or "bridge",
        "Internal": bool(inputs.get("internal")),
        "Attachable": bool(inputs.get("attachable")),
        "Options": inputs.get("options") or {},
        "Labels": {entry["label"]: entry["value"] for entry in inputs.get("labels") or []},
    }
    created = provider.client().call("POST", "/networks/create", body)
    return created["Id"], {**inputs, "id": created["Id"]}


def volume_create(provider: DockerProvider, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    _check_keys("Volume", inputs, {"name", "labels", "driver", "driverOpts"})
    body = {
        "Name": inputs["name"],
        "Driver": inputs.get("driver") or "local",
        "DriverOpts": inputs.get("driverOpts") or {},
        "Labels": {entry["label"]: entry["value"] for entry in inputs.get("labels") or []},
    }
    created = provider.client().call("POST", "/volumes/create", body)
    return created["Name"], {**inputs, "mountpoint": created.get("Mountpoint", "")}


def remote_image(provider: DockerProvider, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    _check_keys("RemoteImage", inputs, {"name", "keepLocally", "platform"})
    api = provider.client()
    name = inputs["name"]
    found = api.inspect_image(name)
    if found is None:
        if "@" in name:
            repo, tag = name.split("@", 1)
        elif ":" in name.rsplit("/", 1)[-1]:
            repo, tag = name.rsplit(":", 1)
        else:
            repo, tag = name, "latest"
        headers = {}
        auth = registry_auth_header(provider, name)
        if auth:
            headers["X-Registry-Auth"] = auth
        status, stream = api.request(
            "POST",
            "/images/create",
            query={"fromImage": repo, "tag": tag, "platform": inputs.get("platform")},
            headers=headers,
            timeout=900,
        )
        problems = [
            e.get("error") or e.get("message")
            for e in (stream if isinstance(stream, list) else [stream])
            if isinstance(e, dict) and (e.get("error") or (status >= 400 and e.get("message")))
        ]
        if status >= 400 or problems:
            raise ProviderError(f"unable to pull image {name}: HTTP {status}: {'; '.join(map(str, problems)) or stream}")
        found = api.inspect_image(name)
        if found is None:
            raise ProviderError(f"image {name} still missing after the pull")
    digests = found.get("RepoDigests") or []
    repo_digest = name if "@sha256:" in name else next((d for d in digests if d.startswith(name.rsplit(":", 1)[0] + "@")), "")
    return f"{found['Id']}{name}", {**inputs, "imageId": found["Id"], "repoDigest": repo_digest}


# --------------------------------------------------------------------------- docker.Image (native)

IMAGE_INPUTS = frozenset({"imageName", "build", "registry", "skipPush", "buildOnPreview"})
BUILD_INPUTS = frozenset({"context", "dockerfile", "platform", "args", "cacheFrom", "contextDigest"})


def context_digest(context: Path, dockerfile: Path) -> str:
    """PD hashContext (provider.go:553-649): each non-ignored file's relative name, mode and content
    (not its mtime), the Dockerfile as "Dockerfile"; a change of any of them rebuilds."""
    ignore_file = context / ".dockerignore"
    patterns = (
        [p.strip() for p in ignore_file.read_text().splitlines() if p.strip() and not p.startswith("#")] if ignore_file.exists() else []
    )

    def ignored(rel: str) -> bool:
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p.removeprefix("**/")) or rel.split("/")[0] == p for p in patterns)

    digest = hashlib.sha256()
    digest.update(b"Dockerfile" + hashlib.sha256(dockerfile.read_bytes()).digest())
    for path in sorted(context.rglob("*")):
        rel = path.relative_to(context).as_posix()
        if not path.is_file() or ignored(rel):
            continue
        digest.update(rel.encode() + oct(path.stat().st_mode).encode() + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def image_check(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """PD Check (provider.go:169-237): the context hash joins the inputs; `platform` defaults to this machine's."""
    _check_keys("Image", inputs, IMAGE_INPUTS)
    build = dict(inputs.get("build") or {})
    context = (ROOT / build.get("context", ".")).resolve()
    dockerfile = (ROOT / build["dockerfile"]).resolve() if build.get("dockerfile") else context / "Dockerfile"
    build["contextDigest"] = context_digest(context, dockerfile)
    if not build.get("platform"):
        import platform as _platform

        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(_platform.machine(), _platform.machine())
        build["platform"] = f"linux/{arch}"
    return {**inputs, "build": build}


_BUILDKIT: list[tuple[str, list[str], dict[str, str]]] = []


def buildkit_cli() -> tuple[str, list[str], dict[str, str]]:
    """BuildKit, as the provider builds: `docker buildx build --load`, or DOCKER_BUILDKIT=1 with a CLI
    older than 23.0 (BuildKit built in); the classic builder as a last resort."""
    if _BUILDKIT:
        return _BUILDKIT[0]
    choice: tuple[str, list[str], dict[str, str]] | None = None
    candidates = [c for c in (shutil.which("docker"), "/usr/bin/docker") if c and os.path.exists(c)]
    for cli in candidates:
        if run([cli, "buildx", "version"], timeout=30).returncode == 0:
            choice = (cli, ["buildx", "build", "--load"], {})
            break
    if choice is None:
        for cli in candidates:
            version = run([cli, "version", "--format", "{{.Client.Version}}"], timeout=30).stdout.strip()
            m = re.match(r"(\d+)\.", version)
            if m and int(m[1]) < 23:
                choice = (cli, ["build"], {"DOCKER_BUILDKIT": "1"})
                break
    _BUILDKIT.append(choice or ("docker", ["build"], {"DOCKER_BUILDKIT": "0"}))
    return _BUILDKIT[0]


def image_build(inputs: Mapping[str, Any], workdir: Path, env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    build = inputs.get("build") or {}
    _check_keys("Image.build", build, BUILD_INPUTS)
    image_name = inputs["imageName"]
    context = (ROOT / build.get("context", ".")).resolve()
    dockerfile = (ROOT / build["dockerfile"]).resolve() if build.get("dockerfile") else context / "Dockerfile"
    config_dir = Path(tempfile.mkdtemp(prefix="docker-config-", dir=workdir))
    (config_dir / "config.json").write_text("{}\n")
    cli_env = {**env, "DOCKER_CONFIG": str(config_dir)}
    try:
        registry = inputs.get("registry") or {}
        if registry.get("server") and registry.get("password"):
            _check_keys("Image.registry", registry, {"server", "username", "password"})
            login = run(
                ["docker", "login", "--username", registry.get("username", ""), "--password-stdin", registry["server"]],
                input=registry["password"],
                env=cli_env,
                timeout=60,
            )
            if login.returncode != 0:
                raise ProviderError(f"docker login {registry['server']} failed: {login.stderr.strip()[-800:]}")
        cli, build_cmd, build_env = buildkit_cli()
        cli_env = {**cli_env, **build_env}
        argv = [cli, *build_cmd, "-f", str(dockerfile), "-t", image_name, "--platform", build["platform"]]
        for key, value in (build.get("args") or {}).items():
            argv += ["--build-arg", f"{key}={value}"]
        cache = build.get("cacheFrom") or {}
        _check_keys("Image.build.cacheFrom", cache, {"images"})
        for ref in cache.get("images") or []:
            run(["docker", "pull", "--quiet", ref], env=cli_env, timeout=300)  # pulled first; a miss is not an error (PD image.go:239-264)
            argv += ["--cache-from", ref]
        argv.append(str(context))
        built = run(argv, env=cli_env, timeout=1200)
        if built.returncode != 0:
            raise ProviderError(f"docker build of {image_name} failed:\n{built.stdout[-1500:]}\n{built.stderr[-2500:]}")
        image_id = json.loads(run(["docker", "image", "inspect", "--format", "{{json .Id}}", image_name], env=cli_env).stdout)
        outputs: dict[str, Any] = {**inputs, "imageName": image_name, "baseImageName": image_name, "repoDigest": image_id}
        if not inputs.get("skipPush"):
            pushed = run(["docker", "push", image_name], env=cli_env, timeout=900)
            if pushed.returncode != 0:
                raise ProviderError(f"docker push {image_name} failed: {pushed.stdout[-1000:]}{pushed.stderr[-1500:]}")
            m = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed.stdout)
            if not m:
                raise ProviderError(f"docker push {image_name}: no digest in its output: {pushed.stdout[-800:]}")
            outputs["repoDigest"] = f"{image_name.rsplit(':', 1)[0]}@{m[1]}"
        return image_name, outputs
    finally:
        shutil.rmtree(config_dir, ignore_errors=True)


# --------------------------------------------------------------------------- pulumi-command


class CommandRunner:
    """Runs pulumi-command's scripts: locally with the interpreter, or over ssh as its Go client connects.

    The inline private key is held by an ssh-agent of this runner's own (memory only, like the Go
    client's parsed key), which the system ssh uses through IdentityAgent.
    """

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.env = dict(env)
        self._agent: subprocess.Popen[bytes] | None = None
        self._sock = workdir / "command-agent.sock"
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._agent is not None:
            self._agent.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._agent.wait(timeout=5)
            self._agent = None

    def _identity_agent(self, private_key: str) -> str:
        with self._lock:
            if self._agent is None:
                self._agent = subprocess.Popen(
                    ["ssh-agent", "-D", "-a", str(self._sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                deadline = time.monotonic() + 10
                while not self._sock.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            fingerprint = hashlib.sha256(private_key.encode()).hexdigest()
            if fingerprint not in self._keys:
                added = run(
                    ["ssh-add", "-"],
                    input=private_key if private_key.endswith("\n") else private_key + "\n",
                    env={**os.environ, "SSH_AUTH_SOCK": str(self._sock)},
                    timeout=30,
                )
                if added.returncode != 0:
                    raise ProviderError(f"ssh: no key found: {added.stderr.strip()[-300:]}")
                self._keys.add(fingerprint)
        return str(self._sock)

    def ssh_argv(self, connection: Mapping[str, Any]) -> list[str]:
        _check_keys("connection", connection, {"host", "port", "user", "privateKey", "hostKey", "dialErrorLimit", "perDialTimeout"})
        host, port, user = connection["host"], _int(connection.get("port") or 22), connection.get("user") or "root"
        agent_sock = self.env.get("SSH_AUTH_SOCK")
        if agent_sock and not Path(agent_sock).exists():
            # PC remote/connection.go:131-142: an SSH_AUTH_SOCK that cannot be dialled fails the connection
            raise ProviderError(f"dial unix {agent_sock}: connect: no such file or directory")
        options = [
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={_int(connection.get('perDialTimeout') or 15)}",
        ]
        if connection.get("privateKey"):
            options += ["-o", f"IdentityAgent={self._identity_agent(connection['privateKey'])}"]
        if connection.get("hostKey"):
            key_type = connection["hostKey"].split()[0]
            name = host if port == 22 else f"[{host}]:{port}"
            options += [
                "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", f"KnownHostsCommand=/bin/echo {name} {connection['hostKey']}",
                # PC remote/connection.go:85-98: HostKeyAlgorithms = [the pinned key's type], nothing else
                "-o", f"HostKeyAlgorithms={key_type}",
            ]  # fmt: skip
        else:
            options += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        return ["ssh", *options, "-p", str(port), "-l", user, "--", host]

    def run(self, type_: str, inputs: Mapping[str, Any], which: str) -> dict[str, Any]:
        script = inputs.get(which)
        if type_ == "command:remote:Command":
            _check_keys("remote Command", inputs, {"connection", "create", "update", "delete", "stdin", "triggers", "environment"})
            argv = [*self.ssh_argv(inputs["connection"]), script or ""]
            status_word = "Process exited with status"
        else:
            _check_keys("local Command", inputs, {"create", "update", "delete", "stdin", "triggers", "interpreter", "environment", "dir"})
            argv = [*list(inputs.get("interpreter") or ["/bin/sh", "-c"]), script or ""]
            status_word = "exit status"
        if inputs.get("environment"):
            raise ProviderError("Command.environment is not translated")
        if not script:
            return dict(inputs)
        stdin = inputs.get("stdin") if which != "delete" else None
        proc = subprocess.run(argv, input=stdin or "", capture_output=True, text=True, env=self.env, timeout=900, check=False, cwd=ROOT)
        if proc.returncode == 255 and type_ == "command:remote:Command" and not proc.stdout:
            # ssh itself failed: the Go client reports the dial or the handshake, not an exit status
            raise ProviderError(f"ssh: handshake failed: {proc.stderr.strip()[-800:]}")
        if proc.returncode != 0:
            raise ProviderError(f"{status_word} {proc.returncode}: running {json.dumps(script)}:\n{proc.stdout}{proc.stderr}")
        return {**inputs, "stdout": proc.stdout.rstrip("\n"), "stderr": proc.stderr.rstrip("\n")}
