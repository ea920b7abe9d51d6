"""A Docker Swarm of docker-in-docker nodes on the local engine, for end-to-end tests.

Each node is a container that runs its own dockerd (the node image is a stand-in built from
Debian bookworm packages, like infra's base images). Node 1 is the only manager; nodes 2..N
join as workers. What the machines the tests run on allow, and what they do not:

    no --privileged (CAP_SYS_RESOURCE is missing from the bounding set): a replacement set of
        flags, and the entrypoint remounts /sys and the cgroup v1 mounts read-write
    no IPVS in the kernel: no service VIPs and no ingress routing mesh; services use
        --endpoint-mode dnsrr and ports are published outside the mesh (node 1's `-p`)

    start_cluster(3, publish=(port,), registry=registry)   context manager: a Cluster
    NODE_STANDIN                                           the node image (infra.StandIn)
    remove_leftovers()                                     what interrupted runs left

Registry: infra.start_registry listens on the host's loopback, and image references name
127.0.0.1:<port>. In every node socat listens on 127.0.0.1:<port> and connects to a unix
socket in a directory shared with the host, where a relay (a thread of this process) connects
to the registry. So the same references pull inside the nodes, nothing listens on a
non-loopback address, and Docker treats 127.0.0.0/8 registries as insecure without flags.

Manager socket: every node's dockerd also listens on a unix socket in that shared directory;
node 1's is the Cluster's docker_host (unix:///tmp/cutover-cluster-…/cutover-swarm-<run>-node1.sock),
owned by the host's docker group, so host processes and the deploy user of
infra.start_sshd(docker_host=…) reach the swarm manager through it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from tests.e2e import infra

LABEL = "cutover.test=cluster"  # on everything a cluster creates on the engine
RUN_LABEL = "cutover.cluster.run"  # which cluster: names are cutover-swarm-<run>-…, so runs never collide
OWNER_LABEL = "cutover.cluster.owner"  # <hostname>:<pid>:<start time> of the process that started it
DIR_LABEL = "cutover.cluster.dir"  # on each node container: the host directory to remove with it
NAME_PREFIX = "cutover-swarm-"
HOST_DIR = "/cutover-host"  # where the nodes see the shared directory
REGISTRY_SOCKET = "registry.sock"

# What works instead of --privileged (refused: Docker 20.10 asks for every capability, and the bounding set
# lacks CAP_SYS_RESOURCE), --tmpfs /run so that a killed node keeps no pid file (its dockerd would not start
# again: "pid file found"), and --init (tini as PID 1 passes signals on to dockerd and reaps orphans, such as
# exited socat children).
NODE_FLAGS = (
    "--init",
    "--cap-add", "ALL",
    "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "--device-cgroup-rule", "a *:* rwm",
    "--tmpfs", "/run",
)  # fmt: skip

# Candidate node subnets, each checked against the host's routes and the engine's networks before
# use; far from 10.0.0.0/24, 10.0.1.0/24, …, where the inner swarm's default address pool
# (10.0.0.0/8, a /24 each) puts its overlays in order.
_SUBNET_BASE = ipaddress.IPv4Network("10.213.0.0/16")

# Shell lines that let a dockerd run in a container started with NODE_FLAGS (a node's, and the fresh server's of
# tests/e2e/test_setup.py): --privileged is refused on this host; with the flags that replace it /sys and the
# cgroup v1 mounts stay read-only, and dockerd must write there.
DOCKERD_MOUNTS = r"""mount -o remount,rw /sys
# the cgroup v1 hierarchies are bind mounts of the host's: only this mount's flag may change
# (`remount,rw` without `bind` asks for the shared superblock: "mount point is busy")
awk '$2 ~ "^/sys/fs/cgroup" { print $2, $3 }' /proc/self/mounts | while read -r dir fstype; do
    if [ "$fstype" = cgroup ]; then mount -o remount,bind,rw "$dir"; else mount -o remount,rw "$dir"; fi
done
"""

_NODE_ENTRYPOINT = (
    r"""#!/bin/sh
# A Swarm node: dockerd in a container without --privileged.
# Any other command (the stand-in's probe) runs as it is.
set -eu
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then exec "$@"; fi
"""
    + DOCKERD_MOUNTS
    + r"""# a restarted node must not find the pid files of its killed dockerd
rm -f /run/docker.pid /run/docker/containerd/containerd.pid
if [ -n "${CUTOVER_REGISTRY_PORT:-}" ]; then
    # the registry listens on the host's loopback: this node's 127.0.0.1:<port> reaches it
    # through a unix socket that the host relays to it
    socat "TCP-LISTEN:$CUTOVER_REGISTRY_PORT,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$CUTOVER_REGISTRY_SOCKET" &
fi
set -- --storage-driver=overlay2 -H unix:///var/run/docker.sock "$@"
# a second socket in the directory shared with the host, for host processes
if [ -n "${CUTOVER_HOST_SOCKET:-}" ]; then set -- "$@" -H "unix://$CUTOVER_HOST_SOCKET"; fi
# the host's docker group owns the sockets: members of it (the deploy user) may use them
if [ -n "${CUTOVER_SOCKET_GID:-}" ]; then set -- "$@" --group "$CUTOVER_SOCKET_GID"; fi
exec dockerd "$@"
"""
)

# what a node runs: the engine, its runtime, the init it gives containers, the registry forwarder
_NODE_PROBE = (
    "dockerd --version && docker --version && containerd --version && runc --version && docker-init --version"
    " && iptables --version && socat -V >/dev/null && ip -V && ps --version"
)

NODE_STANDIN = infra.StandIn(
    name="cutover-swarm-node:bookworm",
    # Debian's docker.io 20.10 (the engine the tests run on) brings containerd, runc and tini
    # (docker-init, for `--init` inside the nodes); socat forwards to the registry
    packages=("docker.io", "iptables", "procps", "iproute2", "ca-certificates", "socat"),
    changes=(
        f"ENV PATH={infra._STANDIN_PATH}",
        # overlay2 inside a node needs a non-overlay file system: a volume
        "VOLUME /var/lib/docker",
        'ENTRYPOINT ["/usr/local/bin/cutover-swarm-node"]',
    ),
    script="""
mkdir -p "$ROOT"/usr/local/bin "$ROOT"/var/lib/docker "$ROOT"/cutover-host
cat > "$ROOT"/usr/local/bin/cutover-swarm-node <<'END_OF_ENTRYPOINT'
"""
    + _NODE_ENTRYPOINT
    + """END_OF_ENTRYPOINT
chmod 0755 "$ROOT"/usr/local/bin/cutover-swarm-node
"""
    + infra._TRIM,
    probe=("sh", "-c", _NODE_PROBE),
)

T = TypeVar("T")


# --------------------------------------------------------------------------
# small helpers


class GiveUpError(infra.InfraError):
    """Raised by a wait_for predicate when waiting longer cannot help (a node container exited)."""


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    """Call `predicate` until it returns something truthy (returned) or `timeout` seconds pass
    (InfraError naming `what` and the last error or value); an InfraError from `predicate` counts
    as "not yet", a GiveUpError ends the wait. Every wait here is bounded (a node that cannot
    start again would otherwise hold the run until CI's own limit)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except GiveUpError:
            raise
        except infra.InfraError as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise infra.InfraError(f"{what}: not after {timeout:.0f}s (last: {str(last)[-1500:]})")
        time.sleep(interval)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy src to dst until EOF, then half-close dst (a request body ends, the response still flows)."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class UnixRelay:
    """Accept on a unix socket and relay each connection to a TCP address (the registry on the
    host's loopback). Threads of this process: the relay ends with it, never left running."""

    def __init__(self, path: Path, target: tuple[str, int]) -> None:
        self.path, self.target = path, target
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(64)
        self.listener.settimeout(0.5)  # the accept loop sees `closed` within that time
        self.closed = threading.Event()
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, name="cluster-registry-relay", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.setblocking(True)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self.lock:
            self.open.update((client, upstream))
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        with self.lock:
            self.open.difference_update((client, upstream))
        client.close()
        upstream.close()

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=5)
        self.listener.close()
        with self.lock:
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.path.unlink(missing_ok=True)


# --------------------------------------------------------------------------
# the cluster


class NodeState(NamedTuple):
    status: str  # Ready, Down, Unknown, Disconnected
    availability: str  # Active, Pause, Drain


class Task(NamedTuple):
    name: str  # <service>.<slot>
    node: str  # hostname of the node (the node container's name)
    state: str  # current state: Running, Preparing, Shutdown, Failed, …
    error: str  # why it failed or was rejected ("" when it did not)


@dataclasses.dataclass(frozen=True)
class Node:
    name: str  # container name, hostname and Swarm node name
    ip: str  # on the cluster network; node 1 advertises it as the manager address


@dataclasses.dataclass
class Cluster:
    nodes: list[Node]
    docker_host: str  # unix:///tmp/cutover-cluster-…/cutover-swarm-<run>-node1.sock: the manager's dockerd, from the host
    network: str  # the host network the nodes share
    run: str  # in every name: cutover-swarm-<run>-node1, …
    subnet: str
    gateway: str
    host_dir: Path  # shared with every node as /cutover-host: the dockerd sockets, the registry relay
    registry: infra.Registry | None = None

    @property
    def manager_node(self) -> Node:
        return self.nodes[0]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise infra.InfraError(f"no node {name} in {[n.name for n in self.nodes]}")

    def docker(self, node: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """`docker exec <node> docker …`: the node's own dockerd (stdin passed on with input=…)."""
        interactive = ["-i"] if kwargs.get("input") is not None else []
        kwargs.setdefault("timeout", 120)
        return infra.docker("exec", *interactive, node, "docker", *args, **kwargs)

    def manager(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """The host's docker CLI against the manager, through node 1's socket in host_dir."""
        kwargs.setdefault("timeout", 60)
        return infra.run(["docker", "-H", self.docker_host, *args], **kwargs)

    def login(self, node: str) -> None:
        """`docker login` to the cluster's registry inside one node. Never done by start_cluster:
        services created with --with-registry-auth must pull without it."""
        if self.registry is None:
            raise infra.InfraError("the cluster was started without a registry")
        reg = self.registry
        self.docker(node, "login", "--username", reg.user, "--password-stdin", reg.address, input=reg.password)

    def label(self, node: str, labels: Mapping[str, str]) -> None:
        """Add Swarm node labels (for placement constraints: node.labels.<key>==<value>)."""
        args = [arg for key, value in labels.items() for arg in ("--label-add", f"{key}={value}")]
        self.manager("node", "update", *args, node)

    def kill(self, node: str) -> None:
        """SIGKILL the node's container: a crash (its TCP connections close)."""
        infra.docker("kill", node, timeout=60)

    def pause(self, node: str, attempts: int = 5) -> None:
        """Freeze the node's processes: a hung node (connections stay open).

        The freezer cgroup may not settle while a busy node's processes keep changing: runc gives up ("unable to
        freeze") and thaws the node again (runc 1.1 libcontainer/cgroups/fs/freezer.go Set), so the pause is
        asked again, a few times, half a second apart."""
        for attempt in range(attempts):
            proc = infra.docker("pause", node, timeout=60, check=attempt == attempts - 1)
            if proc.returncode == 0:
                return
            infra.log(f"pause {node}: {proc.stderr.strip()}; again")
            time.sleep(0.5)

    def unpause(self, node: str) -> None:
        infra.docker("unpause", node, timeout=60)

    def start(self, node: str, timeout: float = 60.0) -> float:
        """Start a killed (or stopped) node's container again and wait until its dockerd is back in the swarm
        and the manager lists it Ready; return the seconds it took (1–2 s). For
        the manager, also until every other running node is Ready again: a restarted manager
        lists the workers Unknown until their next heartbeat."""
        started = time.monotonic()
        infra.docker("start", node, timeout=60)
        _wait_dockerd(node, timeout)
        remaining = max(1.0, timeout - (time.monotonic() - started))
        wait_for(lambda: self.docker(node, "info", "--format", "{{.Swarm.LocalNodeState}}", timeout=20).stdout.strip() == "active",
                 remaining, f"{node} back in the swarm")  # fmt: skip
        expected = {node}
        if node == self.manager_node.name:
            containers = {n.name: _container_state(n.name) for n in self.nodes}
            expected |= {name for name, state in containers.items() if state.get("Running") and not state.get("Paused")}

        def ready() -> bool:
            states = self.node_states()
            return all(states.get(name, NodeState("", "")).status == "Ready" for name in expected)

        remaining = max(1.0, timeout - (time.monotonic() - started))
        wait_for(ready, remaining, f"{sorted(expected)} Ready")
        return time.monotonic() - started

    def node_states(self) -> dict[str, NodeState]:
        """Hostname -> (status, availability), as the manager sees them."""
        out = self.manager("node", "ls", "--format", "{{.Hostname}}\t{{.Status}}\t{{.Availability}}", timeout=30).stdout
        states = {}
        for line in out.splitlines():
            hostname, status, availability = line.split("\t")
            states[hostname] = NodeState(status, availability)
        return states

    def tasks(self, service: str) -> list[Task]:
        """The service's tasks (history included), as the manager sees them."""
        fmt = "{{.Name}}\t{{.Node}}\t{{.CurrentState}}\t{{.Error}}"
        out = self.manager("service", "ps", "--no-trunc", "--format", fmt, service, timeout=30).stdout
        tasks = []
        for line in out.splitlines():
            name, node, current, error = line.split("\t", 3)
            tasks.append(Task(name, node, current.split(" ")[0], error))  # "Running 3 seconds ago" -> Running
        return tasks

    def running(self, service: str) -> list[Task]:
        return [t for t in self.tasks(service) if t.state == "Running"]


def _process_start(pid: int) -> str | None:
    """When the process started (clock ticks since boot, /proc/<pid>/stat field 22), None if it is gone:
    with the pid, it names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def _owner_gone(owner: str) -> bool:
    """Whether the process that started a cluster has ended. A cluster of another machine or
    container sharing this engine (another hostname) is not judged: it is left alone."""
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname():
        return False
    return not pid.isdigit() or _process_start(int(pid)) != started


_KINDS = ("container", "network", "volume")


def _cluster_objects(kind: str) -> list[tuple[str, str, str, str]]:
    """(name, run, owner, host dir) of every container, network or volume (`kind`) carrying LABEL."""
    fields = ["{{.Names}}" if kind == "container" else "{{.Name}}", *(f'{{{{.Label "{k}"}}}}' for k in (RUN_LABEL, OWNER_LABEL, DIR_LABEL))]
    ls = [kind, "ls", *(["-a"] if kind == "container" else []), "--filter", f"label={LABEL}", "--format", "\t".join(fields)]
    rows = []
    for line in infra.docker(*ls, timeout=60).stdout.splitlines():
        name, run, owner, host_dir = line.split("\t", 3)
        rows.append((name, run, owner, host_dir))
    return rows


def remove_leftovers(run: str | None = None) -> None:
    """Remove one cluster's node containers (and their host directory), volumes and network:
    those of `run`, or, without it, those of every cluster whose owning process has ended (an
    interrupted run; start_cluster calls this first). A running cluster of another process
    sharing this engine is never touched."""

    def doomed(row: tuple[str, str, str, str]) -> bool:
        _, row_run, owner, _ = row
        return row_run == run if run is not None else (not owner or _owner_gone(owner))

    targets: dict[str, list[str]] = {}
    for kind in _KINDS:
        rows = [row for row in _cluster_objects(kind) if doomed(row)]
        targets[kind] = [row[0] for row in rows]
        for name, _, _, host_dir in rows:
            if kind == "container":
                infra.docker("rm", "-f", "-v", name, check=False, timeout=120)
                if host_dir.startswith(tempfile.gettempdir() + "/cutover-cluster-"):
                    shutil.rmtree(host_dir, ignore_errors=True)
            else:
                infra.docker(kind, "rm", name, check=False, timeout=120)
    left = {kind: sorted({row[0] for row in _cluster_objects(kind)} & set(targets[kind])) for kind in _KINDS}
    if any(left.values()):
        raise infra.InfraError(f"cluster objects could not be removed: {left}")


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Subnets in use: the engine's networks and the host's routes (its own LAN among them)."""
    used: list[ipaddress.IPv4Network] = []
    ids = infra.docker("network", "ls", "-q", timeout=30).stdout.split()
    if ids:
        for line in infra.docker("network", "inspect", "--format", "{{json .IPAM.Config}}", *ids, timeout=30).stdout.splitlines():
            for config in json.loads(line or "null") or []:
                with contextlib.suppress(ValueError, KeyError):
                    net = ipaddress.ip_network(config["Subnet"], strict=False)
                    if isinstance(net, ipaddress.IPv4Network):
                        used.append(net)
    # the kernel's IPv4 routes (no iproute2 needed): destination and mask in little-endian hex
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        with contextlib.suppress(ValueError, IndexError):
            dest, mask = (ipaddress.IPv4Address(int(fields[i], 16).to_bytes(4, "little")) for i in (1, 7))
            if int(mask):  # not the default route
                used.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    return used


def _create_network(name: str, marks: Sequence[str]) -> ipaddress.IPv4Network:
    """A bridge network on a /24 of _SUBNET_BASE that overlaps nothing in use; a concurrent creator
    may take the same one between the check and the create, so a refused subnet is skipped."""
    used = _used_networks()
    errors = []
    for subnet in _SUBNET_BASE.subnets(new_prefix=24):
        if any(subnet.overlaps(u) for u in used):
            continue
        gateway = str(subnet.network_address + 1)
        proc = infra.docker("network", "create", "--driver", "bridge", *marks,
                            "--subnet", str(subnet), "--gateway", gateway, name, check=False, timeout=60)  # fmt: skip
        if proc.returncode == 0:
            return subnet
        errors.append(proc.stderr.strip())
        if len(errors) >= 5:
            break
    raise infra.InfraError(f"no subnet of {_SUBNET_BASE} could be used for {name}: {errors}")


def _docker_gid() -> int | None:
    """The host's docker group: it owns the engine's socket, and the deploy user is in it."""
    try:
        return grp.getgrnam("docker").gr_gid
    except KeyError:
        return None


def _container_state(node: str) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(infra.docker("inspect", "--format", "{{json .State}}", node, timeout=30).stdout)
    return state


def _wait_dockerd(node: str, timeout: float) -> None:
    """Until the node's dockerd answers (about 1 s); its log if the container exits."""

    def answers() -> bool:
        if not _container_state(node).get("Running"):
            logs = infra.docker("logs", "--tail", "40", node, check=False, timeout=30)
            raise GiveUpError(f"node {node} exited:\n{logs.stdout}{logs.stderr}")
        return infra.docker("exec", node, "docker", "version", "--format", "{{.Server.Version}}", check=False, timeout=20).returncode == 0

    try:
        wait_for(answers, timeout, f"dockerd in {node}")
    except GiveUpError:
        raise
    except infra.InfraError as exc:
        logs = infra.docker("logs", "--tail", "40", node, check=False, timeout=30)
        raise infra.InfraError(f"{exc}\nlogs of {node}:\n{logs.stdout}{logs.stderr}") from None


@contextlib.contextmanager
def start_cluster(
    nodes: int = 3,
    *,
    publish: Sequence[int] = (),
    registry: infra.Registry | None = None,
    labels: Mapping[int, Mapping[str, str]] | None = None,
    timeout: float = 180.0,
) -> Iterator[Cluster]:
    """A Swarm of `nodes` docker-in-docker nodes: node 1 the manager, the others workers.

    publish: ports that node 1 publishes on the host's loopback as the same port (an edge
    container in node 1 that publishes a port answers on 127.0.0.1:<port> of the host; no
    ingress mesh without IPVS). registry: the nodes pull its 127.0.0.1:<port>
    references (see the module docstring). labels: node number (1: the manager) -> Swarm node labels.
    The whole start is bounded by `timeout`; everything created is removed afterwards,
    whatever happens, and so is what an interrupted run left before."""
    if nodes < 1:
        raise infra.InfraError("a cluster needs at least one node")
    started = time.monotonic()
    deadline = started + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise infra.InfraError(f"the cluster did not start within {timeout:.0f}s")
        return remaining

    remove_leftovers()
    run = secrets.token_hex(3)
    marks = ["--label", LABEL, "--label", f"{RUN_LABEL}={run}", "--label", f"{OWNER_LABEL}={_owner()}"]  # on every object
    network = f"{NAME_PREFIX}{run}-net"
    host_dir = Path(tempfile.mkdtemp(prefix="cutover-cluster-"))
    os.chmod(host_dir, 0o755)  # noqa: S103 - the deploy user reaches node 1's socket (group docker, 0660) in it
    relay: UnixRelay | None = None
    names = [f"{NAME_PREFIX}{run}-node{i}" for i in range(1, nodes + 1)]
    try:
        subnet = _create_network(network, marks)
        gateway = str(subnet.network_address + 1)
        members = [Node(name, str(subnet.network_address + 10 + i)) for i, name in enumerate(names, start=1)]
        env = {}
        gid = _docker_gid()
        if gid is not None:
            env["CUTOVER_SOCKET_GID"] = str(gid)
        if registry is not None:
            port = int(registry.address.rsplit(":", 1)[1])
            relay = UnixRelay(host_dir / REGISTRY_SOCKET, ("127.0.0.1", port))
            env |= {"CUTOVER_REGISTRY_PORT": str(port), "CUTOVER_REGISTRY_SOCKET": f"{HOST_DIR}/{REGISTRY_SOCKET}"}
        for i, node in enumerate(members):
            volume = f"{node.name}-lib"
            infra.docker("volume", "create", *marks, volume, timeout=60)
            ports = [arg for p in publish for arg in ("-p", f"127.0.0.1:{p}:{p}")] if i == 0 else []
            node_env = [
                arg for k, v in {**env, "CUTOVER_HOST_SOCKET": f"{HOST_DIR}/{node.name}.sock"}.items() for arg in ("-e", f"{k}={v}")
            ]
            infra.docker("run", "-d", "--name", node.name, "--hostname", node.name, "--network", network, "--ip", node.ip,
                         *marks, "--label", f"{DIR_LABEL}={host_dir}", *NODE_FLAGS,
                         "-v", f"{volume}:/var/lib/docker", "-v", f"{host_dir}:{HOST_DIR}", *node_env, *ports,
                         NODE_STANDIN.name, timeout=min(120, left()))  # fmt: skip
        with ThreadPoolExecutor(max_workers=nodes) as pool:
            list(pool.map(lambda n: _wait_dockerd(n.name, left()), members))
        manager = members[0]
        infra.docker("exec", manager.name, "docker", "swarm", "init", "--advertise-addr", manager.ip, timeout=min(60, left()))
        token = infra.docker("exec", manager.name, "docker", "swarm", "join-token", "-q", "worker", timeout=30).stdout.strip()

        def join(node: Node) -> None:
            infra.docker("exec", node.name, "docker", "swarm", "join", "--token", token, "--advertise-addr", node.ip,
                         f"{manager.ip}:2377", timeout=min(60, left()))  # fmt: skip

        with ThreadPoolExecutor(max_workers=max(1, nodes - 1)) as pool:
            list(pool.map(join, members[1:]))
        cluster = Cluster(
            nodes=members,
            docker_host=f"unix://{host_dir}/{manager.name}.sock",
            network=network,
            run=run,
            subnet=str(subnet),
            gateway=gateway,
            host_dir=host_dir,
            registry=registry,
        )

        def all_ready() -> bool:
            states = cluster.node_states()
            return len(states) == nodes and all(s == NodeState("Ready", "Active") for s in states.values())

        wait_for(all_ready, left(), f"{nodes} nodes Ready")
        for number, node_labels in (labels or {}).items():
            cluster.label(members[number - 1].name, node_labels)
        infra.log(f"swarm of {nodes} nodes on {subnet} up in {time.monotonic() - started:.1f}s (manager: {cluster.docker_host})")
        yield cluster
    finally:
        cleanup_started = time.monotonic()
        if relay is not None:
            relay.close()
        try:
            remove_leftovers(run)
        finally:
            shutil.rmtree(host_dir, ignore_errors=True)
        infra.log(f"cluster removed in {time.monotonic() - cleanup_started:.1f}s")
