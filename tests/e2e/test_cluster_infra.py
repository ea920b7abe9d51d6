"""The multi-node building blocks work for real: a 3-node Swarm of docker-in-docker nodes
(tests/e2e/cluster.py) on this machine's engine, the loopback registry, and the deploy user
over ssh, as the multi-host scenarios will use them.

    1  three nodes Ready, node 2 with its label; the manager answers host processes on its socket
       (docker group, 0660)
    2  a 3-replica dnsrr service from a digest reference in the registry, created from the host
       with --with-registry-auth (no node is logged in), runs on at least 2 nodes
    3  a container on node 1, attached to the overlay, reaches the tasks on the other nodes over HTTP;
       a port that a container on node 1 publishes answers on the host's loopback
    4  the deploy user's ssh sessions (a shell command, Docker over ssh://) reach the swarm manager
    5  a killed worker starts again and is Ready; a paused one is frozen, then thaws

Run: .venv/bin/pytest -m e2e tests/e2e/test_cluster_infra.py -v
"""

from __future__ import annotations

import dataclasses
import grp
import json
import os
import stat
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import cluster, infra
from tests.e2e.conftest import record, tools_problem, unavailable

pytestmark = pytest.mark.e2e

SERVICE = "cutover-infra-web"
OVERLAY = "cutover-infra-net"
PORT = 8000
ZONE = "cutover.zone"  # a node label, set on node 2 at the start
# Each task serves a file naming its node: the service's hostname template is the node's hostname.
SERVE = f"mkdir -p /srv && hostname > /srv/node && exec python3 -m http.server {PORT} --directory /srv"

# Runs in a container on node 1 attached to the overlay: every task address of the dnsrr service
# (tasks.<service>), and which node answered from it. Bounded: 30 s for the DNS records and answers.
CLIENT = f"""
import json, socket, time, urllib.request
deadline = time.monotonic() + 30
answers = {{}}
while time.monotonic() < deadline:
    try:
        ips = sorted({{a[4][0] for a in socket.getaddrinfo("tasks.{SERVICE}", {PORT}, proto=socket.IPPROTO_TCP)}})
    except OSError:
        ips = []
    for ip in ips:
        if ip not in answers:
            try:
                answers[ip] = urllib.request.urlopen(f"http://{{ip}}:{PORT}/node", timeout=3).read().decode().strip()
            except OSError:
                pass
    if len(ips) == 3 and all(ip in answers for ip in ips):
        break
    time.sleep(0.5)
print(json.dumps(answers))
"""


def fetch(url: str) -> str | None:
    """The body of a loopback URL, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - http://127.0.0.1 URLs only
            body: bytes = response.read()
            return body.decode().strip()
    except OSError:
        return None


@dataclasses.dataclass
class Env:
    cluster: cluster.Cluster
    registry: infra.Registry
    image: str  # 127.0.0.1:<port>/cutover-infra/python@sha256:…
    edge_port: int  # node 1 publishes it on the host's loopback
    numbers: dict[str, Any]


@pytest.fixture(scope="module")
def env(docker_engine: infra.Engine, e2e_results: dict[str, Any]) -> Iterator[Env]:
    problem = tools_problem("docker-registry", "htpasswd", "debootstrap", "sshd", "ssh", "ssh-keygen", root=True)
    if problem:
        unavailable(problem)
    started = time.monotonic()
    numbers: dict[str, Any] = {}
    infra.ensure_base_images(standins=(infra.PYTHON_STANDIN,))
    # a local name only: no registry has it, so no pull is tried
    numbers["node_image"] = infra.ensure_base_images(standins=(cluster.NODE_STANDIN,), pull=False)[0]["source"]
    numbers["images_s"] = round(time.monotonic() - started, 1)
    with infra.start_registry() as registry:
        tag = f"{registry.address}/cutover-infra/python:e2e"
        try:
            mark = time.monotonic()
            image = registry.push(infra.PYTHON_STANDIN.name, "cutover-infra/python", "e2e")
            numbers["push_s"] = round(time.monotonic() - mark, 1)
            mark = time.monotonic()
            edge_port = infra.free_port()
            with cluster.start_cluster(3, publish=(edge_port,), registry=registry, labels={2: {ZONE: "b"}}) as swarm:
                numbers["cluster_up_s"] = round(time.monotonic() - mark, 1)
                yield Env(swarm, registry, image, edge_port, numbers)
                mark = time.monotonic()
            numbers["cleanup_s"] = round(time.monotonic() - mark, 1)
        finally:
            infra.docker("rmi", tag, check=False)  # the tag only: python:3.11-slim keeps the image
    numbers["module_s"] = round(time.monotonic() - started, 1)
    record(e2e_results, "cluster_infra", numbers)


def test_1_three_nodes_are_ready_and_the_manager_answers_on_its_socket(env: Env) -> None:
    swarm = env.cluster
    assert swarm.node_states() == {n.name: ("Ready", "Active") for n in swarm.nodes}
    info = swarm.manager("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}} {{.Name}}")
    assert info.stdout.split() == ["active", "true", "3", swarm.manager_node.name]
    node2 = swarm.nodes[1].name
    assert json.loads(swarm.manager("node", "inspect", "--format", "{{json .Spec.Labels}}", node2).stdout) == {ZONE: "b"}
    # the deploy user (group docker) may use it: the sockets belong to the host's docker group
    sock = os.stat(swarm.docker_host.removeprefix("unix://"))
    assert stat.S_ISSOCK(sock.st_mode)
    assert stat.S_IMODE(sock.st_mode) == 0o660
    assert sock.st_gid == grp.getgrnam("docker").gr_gid
    # the host engine itself never joins: only the nodes' dockerds are in swarm mode
    assert infra.docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"


def test_2_a_dnsrr_service_from_the_registry_spreads_over_the_nodes(env: Env) -> None:
    swarm = env.cluster
    swarm.manager("network", "create", "--driver", "overlay", "--attachable", OVERLAY)
    started = time.monotonic()
    # no IPVS in this kernel, so no VIP: dnsrr; the host's
    # registry login travels with the service (--with-registry-auth), as from a deploy machine
    swarm.manager("service", "create", "--detach", "--name", SERVICE, "--with-registry-auth", "--endpoint-mode", "dnsrr",
                  "--network", OVERLAY, "--replicas", "3", "--init", "--hostname", "{{.Node.Hostname}}",
                  env.image, "sh", "-c", SERVE, env=env.registry.env())  # fmt: skip
    try:
        running = cluster.wait_for(lambda: tasks if len(tasks := swarm.running(SERVICE)) == 3 else None, 120, "3 running tasks")
    except infra.InfraError as exc:
        raise AssertionError(f"{exc}\ntasks: {swarm.tasks(SERVICE)}") from None
    env.numbers["service_running_s"] = round(time.monotonic() - started, 1)
    nodes = {t.node for t in running}
    assert len(nodes) >= 2, running
    # every node that runs a task pulled the digest reference itself
    for node in nodes:
        assert env.image in swarm.docker(node, "image", "ls", "--digests", "--format", "{{.Repository}}@{{.Digest}}").stdout.split()


def test_3_a_container_on_node_1_reaches_tasks_on_other_nodes_over_the_overlay(env: Env) -> None:
    swarm = env.cluster
    node1 = swarm.manager_node.name
    swarm.login(node1)  # `docker run` pulls with the CLI's own login inside the node
    started = time.monotonic()
    out = swarm.docker(node1, "run", "--rm", "--network", OVERLAY, env.image, "python3", "-c", CLIENT, timeout=120).stdout
    env.numbers["overlay_check_s"] = round(time.monotonic() - started, 1)
    answers: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    running = swarm.running(SERVICE)
    assert sorted(answers.values()) == sorted(t.node for t in running), (answers, running)
    assert set(answers.values()) - {node1}, f"no task on another node answered: {answers}"
    # an edge container on node 1 publishes a port: the host reaches it on loopback (no ingress mesh here)
    swarm.docker(node1, "run", "-d", "--name", "cutover-infra-edge", "--hostname", "edge", "--network", OVERLAY,
                 "-p", f"{env.edge_port}:{PORT}", env.image, "sh", "-c", SERVE)  # fmt: skip
    url = f"http://127.0.0.1:{env.edge_port}/node"
    cluster.wait_for(lambda: fetch(url) == "edge", 20, f"{url} from the host")


def test_4_the_deploy_user_reaches_the_swarm_manager_over_ssh(env: Env) -> None:
    swarm = env.cluster
    with infra.start_sshd(docker_host=swarm.docker_host) as host:
        # a remote shell command: DOCKER_HOST comes from sshd_config (SetEnv)
        info = host.ssh_run("docker info", timeout=60).stdout
        assert "Swarm: active" in info
        assert "Is Manager: true" in info
        # Docker over ssh:// (`docker system dial-stdio` on the remote side)
        fmt = "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Name}}"
        assert host.docker("info", "--format", fmt, timeout=60).stdout.split() == ["active", "true", swarm.manager_node.name]
        assert SERVICE in host.docker("service", "ls", "--format", "{{.Name}}", timeout=60).stdout.split()


def test_5_a_killed_worker_comes_back_and_a_paused_one_thaws(env: Env) -> None:
    swarm = env.cluster
    worker, other = swarm.nodes[2].name, swarm.nodes[1].name
    swarm.kill(worker)
    assert infra.docker("inspect", "--format", "{{.State.Running}}", worker).stdout.strip() == "false"
    env.numbers["restart_ready_s"] = round(swarm.start(worker), 1)
    swarm.pause(other)
    try:
        assert infra.docker("inspect", "--format", "{{.State.Paused}}", other).stdout.strip() == "true"
        # a frozen dockerd does not answer (bounded: the exec is refused or times out)
        assert infra.docker("exec", other, "true", check=False, timeout=10).returncode != 0
    finally:
        swarm.unpause(other)
    assert swarm.docker(other, "info", "--format", "{{.Swarm.LocalNodeState}}", timeout=30).stdout.strip() == "active"
    assert swarm.node_states() == {n.name: ("Ready", "Active") for n in swarm.nodes}
