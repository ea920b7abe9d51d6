"""A stack on a Swarm cluster: each role of a release is a service, the rest is the single-host release."""

from __future__ import annotations

import json
import shlex
import subprocess
from typing import Any

import pytest

from components.config.load import parse_config
from components.config.model import ConfigError
from components.release.go_live import Probation, go_live_script
from tests.conftest import full_config
from tests.harness import ProgramRun, Registration, run_program

SERVICE = "docker:index/service:Service"
CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
WORKER = {"command": ["python", "-m", "worker"], "replicas": 2, "healthcheck": {"command": ["python", "-m", "heartbeat", "30"]}}
CLUSTER = {"enabled": True, "placement": ["node.role==worker"], "spread": "node.labels.zone", "convergeTimeout": "2m"}


def cluster_config(**overrides: Any) -> tuple[dict[str, Any], set[str]]:
    raw, secrets = full_config()
    return {**raw, "cluster": CLUSTER, "roles": {"worker": WORKER}, **overrides}, secrets


@pytest.fixture(scope="module")
def on_cluster() -> ProgramRun:
    raw, secrets = cluster_config()
    return run_program(raw, secrets, stack="prod")


@pytest.fixture(scope="module")
def on_host() -> ProgramRun:
    raw, secrets = full_config()
    return run_program({**raw, "roles": {"worker": WORKER}}, secrets, stack="prod")


def service(run: ProgramRun, role: str) -> Registration:
    found = [r for r in run.of_type(SERVICE) if r.name.startswith(f"{role}-")]
    assert len(found) == 1, [r.name for r in run.of_type(SERVICE)]
    return found[0]


def test_each_role_is_one_service_with_its_replicas_spread_over_the_nodes(on_cluster: ProgramRun) -> None:
    web, worker = service(on_cluster, "web"), service(on_cluster, "worker")
    assert web.name == "web-0123456789ab" and worker.name == "worker-0123456789ab"
    assert web.inputs["mode"] == {"replicated": {"replicas": 3}} and worker.inputs["mode"] == {"replicated": {"replicas": 2}}
    for s in (web, worker):
        task = s.inputs["taskSpec"]
        assert task["placement"] == {"constraints": ["node.role==worker"], "prefs": ["node.labels.zone"]}
        # no virtual IP: the service name resolves to its tasks (a VIP needs IPVS, which the test machines lack)
        assert s.inputs["endpointSpec"] == {"mode": "dnsrr"}
        assert s.inputs["convergeConfig"] == {"delay": "1s", "timeout": "2m"}, "Pulumi waits until every task runs, healthy"
        assert s.options["deleteBeforeReplace"] is False and s.options["replaceOnChanges"] == ["*"], "a new release starts beside the old"
        # no login of its own: the provider sends its registry_auth for the image's registry (kreuzwerker v4.5.0
        # resource_docker_service_funcs.go:622-643), so a new password replaces no service
        assert "auth" not in s.inputs
        # a secret inside an input makes the whole input secret (the SDK marks the property it is in)
        assert "taskSpec" in s.secret_inputs, "the environment holds secrets"
    assert not [c for c in on_cluster.of_type(CONTAINER) if c.name.startswith(("web-0", "worker-"))], "no per-host containers"


def test_a_service_runs_what_the_container_would_on_one_host(on_cluster: ProgramRun, on_host: ProgramRun) -> None:
    svc = service(on_cluster, "web").inputs["taskSpec"]
    box = next(c for c in on_host.of_type(CONTAINER) if c.name == "web-0123456789ab-0").inputs
    spec = svc["containerSpec"]
    # the digest-pinned reference, which every node pulls (a host runs the image it pulled, by ID)
    image = on_cluster.one("docker:index/image:Image", "app-build").outputs["repoDigest"]
    assert spec["image"] == image and "@sha256:" in image
    assert box["image"] == on_host.one("docker:index/remoteImage:RemoteImage", "web-image").outputs["imageId"]
    assert spec["user"] == box["user"] and spec["readOnly"] == box["readOnly"] is True
    assert spec["healthcheck"] == box["healthcheck"]
    assert spec["stopSignal"] == "SIGTERM" and spec["stopGracePeriod"] == "30s" and box["stopTimeout"] == 30
    assert spec["capDrops"] == ["ALL"] and spec["init"] is True
    assert spec["mounts"] == [{"type": "tmpfs", "target": "/tmp", "tmpfsOptions": {"sizeBytes": 64 * 1024 * 1024}}]
    assert svc["resources"]["limits"] == {"memoryBytes": box["memory"] * 1024 * 1024, "nanoCpus": 1_000_000_000}
    assert sorted(f"{k}={v}" for k, v in spec["env"].items()) == sorted(box["envs"])
    # the same networks, by ID: Read stores only the ID, so a name would replace the service on every update
    assert [n["name"] for n in box["networksAdvanced"]] == ["web-prod-edge", "web-prod-private"]
    ids = [on_cluster.one(NETWORK, n).id for n in ("proxy-network", "accessories-network")]
    assert svc["networksAdvanceds"] == [{"id": i} for i in ids]
    assert "restartPolicy" not in svc, "given in part it would read back as a change (pulumi-docker#1285)"


def test_a_service_is_declared_as_the_provider_reads_it_back(on_cluster: ProgramRun) -> None:
    worker = service(on_cluster, "worker")
    spec = worker.inputs["taskSpec"]["containerSpec"]
    # kreuzwerker's shortDur: "10m", never "10m0s" or "600s"
    assert spec["stopGracePeriod"] == "10m"
    assert spec["healthcheck"]["interval"] == "5s" and spec["healthcheck"]["startPeriod"] == "10s"
    assert worker.options["ignoreChanges"] == ["taskSpec.placement.platforms"], "filled in from the image's manifest at create"


def test_the_proxy_and_accessories_share_attachable_overlays_with_the_tasks(on_cluster: ProgramRun, on_host: ProgramRun) -> None:
    for name in ("proxy-network", "accessories-network"):
        net = on_cluster.one(NETWORK, name).inputs
        assert net["driver"] == "overlay" and net["attachable"] is True, name
    assert on_cluster.one(NETWORK, "accessories-network").inputs["internal"] is True
    # one host: exactly as before this section existed (a changed network would be replaced)
    assert on_host.one(NETWORK, "proxy-network").inputs["driver"] == "bridge"
    assert "driver" not in on_host.one(NETWORK, "accessories-network").inputs
    assert "attachable" not in on_host.one(NETWORK, "proxy-network").inputs
    # the proxy and the accessories stay containers on the manager
    names = {c.name for c in on_cluster.of_type(CONTAINER)}
    assert {"proxy-ports", "accessories-postgres", "accessories-redis"} <= names, names


def test_the_switch_routes_each_slot_to_the_service_and_watches_its_tasks(on_cluster: ProgramRun) -> None:
    switch = next(r for r in on_cluster.registrations if r.name == "switch-traffic")
    script = switch.inputs["create"]
    web = service(on_cluster, "web").outputs["name"]
    worker = service(on_cluster, "worker").outputs["name"]
    assert 'sh "${canaried:-}" ' + f"{web} {web} {web}" in script, "three slots, each the service's name (dnsrr: all its tasks)"
    assert "docker service ps --filter desired-state=running --format '{{.CurrentState}}' \"$s\"" in script
    assert f"for s in {web} {worker}; do" in script, "both services gated, once each"
    assert "docker events" not in script, "another node's containers have no events on the manager"
    assert f"--filter desired-state=shutdown {web} {worker}" in script


def test_cluster_config_errors_name_key_value_and_expectation() -> None:
    raw, secrets = full_config()
    bad = {
        **raw,
        "cluster": {"enabled": "yes", "placement": ["role=worker"], "spread": "zone", "convergeTimeout": "soon", "nodes": 3},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(bad, secrets, "prod", "a" * 40)
    text = str(err.value)
    for expected in (
        'cutover:cluster.enabled = "yes": expected true (the host is a Swarm manager) or false',
        'cutover:cluster.placement = ["role=worker"]: expected a list of Swarm constraints',
        'cutover:cluster.spread = "zone": expected a node label',
        'cutover:cluster.convergeTimeout = "soon": expected a duration',
        "cutover:cluster.nodes",
    ):
        assert expected in text, text


def test_the_nodes_pull_with_the_providers_login() -> None:
    raw, secrets = cluster_config()
    run = run_program(raw, secrets, stack="prod")
    provider = run.one("pulumi:providers:docker", "host-docker")
    # a provider's object inputs arrive as JSON text
    assert json.loads(provider.inputs["registryAuth"])[0]["address"] == "ghcr.io" and "registryAuth" in provider.secret_inputs


def test_a_cluster_without_web_declares_no_web_service() -> None:
    raw, secrets = cluster_config(web={"enabled": False})
    run = run_program(raw, secrets, stack="prod")
    assert [s.name for s in run.of_type(SERVICE)] == ["worker-0123456789ab"]


def test_a_cluster_needs_a_pushed_image() -> None:
    raw, secrets = cluster_config()
    with pytest.raises(ConfigError) as err:
        parse_config({**raw, "image": {**raw["image"], "push": False}}, secrets, "prod", "a" * 40)
    assert "cutover:image.push = false: expected true on a cluster (cluster.enabled)" in str(err.value)
    # a digest given to deploy is pulled by every node as it is
    ref = {**raw["image"], "push": False, "ref": "ghcr.io/acme/web@sha256:" + "1" * 64}
    assert parse_config({**raw, "image": ref}, secrets, "prod", "a" * 40).cluster.enabled


def test_a_single_instance_role_is_refused_on_a_cluster() -> None:
    bot = {"command": ["python", "-m", "bot"], "overlap": False, "healthcheck": {"command": ["true"]}}
    raw, secrets = cluster_config(roles={"bot": bot})
    with pytest.raises(ConfigError) as err:
        parse_config(raw, secrets, "prod", "a" * 40)
    assert "cutover:roles.bot.overlap = false: expected true on a cluster (cluster.enabled)" in str(err.value)


FAKE_DOCKER = r"""#!/bin/sh
# `docker service ps|inspect` as a manager answers them, from files: $STATE/<service>.running holds the
# CurrentState of its running tasks, $STATE/<service>.shutdown its stopped tasks (ID and text).
case "$1 $2" in
  "service inspect") cat "$STATE/${5}.replicas" ;;
  "service ps")
    shift 2
    if [ "$1 $2" = "--filter desired-state=running" ]; then cat "$STATE/${5}.running"; exit 0; fi
    if [ "$1 $2 $3" = "--no-trunc --filter desired-state=shutdown" ]; then
      shift 3
      if [ "$2" = "-q" ]; then cut -d' ' -f1 "$STATE/$1.shutdown"; else cat "$STATE/$1.shutdown"; fi
      exit 0
    fi
    ;;
  "service logs") echo "boom: the new code crashed"; exit 0 ;;
esac
exit 0
"""


def run_cluster_script(
    tmp_path: Any, running: str, shutdown_before: str, shutdown_after: str, probation_s: int = 2
) -> subprocess.CompletedProcess[str]:
    """The go-live step's gate and probation (no proxy) against a stand-in `docker` whose answers change
    once the release went live: tasks that stopped before that are not held against the release."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    (state / "worker-1.replicas").write_text("2\n")
    (state / "worker-1.running").write_text(running)
    (state / "worker-1.shutdown").write_text(shutdown_before)
    script = go_live_script(
        None, [], drain_s=0, wait_healthy_s=1, verification=None, probation=Probation(probation_s, 10),
        watched=["worker-1", "worker-1"], on_cluster=True,
    )  # fmt: skip
    # the task list changes once the release went live (during the verification, say): the tasks stopped
    # before that were noted just before it went live
    live = 'went_live="$(date +%s)"'
    assert script.index("stopped_before=") < script.index(live)
    script = script.replace(live, f"{live}\nprintf '%s' {shlex.quote(shutdown_after)} > \"$STATE/worker-1.shutdown\"", 1)
    return subprocess.run(
        ["sh", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin", "STATE": str(state)}, capture_output=True, text=True, timeout=30
    )


def test_cluster_gate_refuses_a_service_with_fewer_healthy_tasks_than_it_wants(tmp_path: Any) -> None:
    done = run_cluster_script(tmp_path, "Running 5 seconds ago\nStarting 2 seconds ago\n", "", "")
    assert done.returncode == 1
    assert "refusing to route to worker-1: 1 of its 2 tasks run healthy" in done.stderr


def test_cluster_probation_fails_on_a_task_stopped_after_going_live_only(tmp_path: Any) -> None:
    running = "Running 5 seconds ago\nRunning 4 seconds ago\n"
    old = "aaa worker-1.1 on node2: Shutdown 1 minute ago task: non-zero exit (1)\n"
    (tmp_path / "a").mkdir()
    passed = run_cluster_script(tmp_path / "a", running, old, old)
    assert passed.returncode == 0, passed.stderr
    assert "probation passed" in passed.stdout
    new = old + "bbb worker-1.2 on node3: Failed 1 second ago task: non-zero exit (3)\n"
    (tmp_path / "b").mkdir()
    failed = run_cluster_script(tmp_path / "b", running, old, new)
    assert failed.returncode == 1
    assert "probation failed" in failed.stderr and "task worker-1.2 on node3: Failed 1 second ago task: non-zero exit (3)" in failed.stderr
    assert "boom: the new code crashed" in failed.stderr, "the service's last log lines"


def test_status_shows_the_nodes_and_where_each_task_runs() -> None:
    from components.ops.logs import logs_script
    from components.ops.status import status_report, status_script

    raw, secrets = cluster_config()
    cfg = parse_config(raw, secrets, "prod", "a" * 40)
    script = status_script(cfg)
    assert "docker node ls --format '{{json .}}'" in script
    assert "docker service ls -q --filter label=cutover.app=web --filter label=cutover.stack=prod" in script
    printed = "\n".join(
        [
            "### containers",
            "### nodes",
            '{"Hostname": "node1", "Status": "Ready", "Availability": "Active", "ManagerStatus": "Leader"}',
            '{"Hostname": "node2", "Status": "Down", "Availability": "Active", "ManagerStatus": ""}',
            "### tasks",
            '{"Name": "web-0123456789ab-1f2e3d4.1", "Node": "node3", "CurrentState": "Running 2 minutes ago"}',
            "### upstreams",
            "web-0123456789ab-1f2e3d4",
            "### docker",
            "20.10.24",
        ]
    )
    report = status_report(printed, None)
    assert "node1  Ready   Active        Leader" in report and "node2  Down    Active        -" in report
    assert "web-0123456789ab-1f2e3d4.1  node3  Running 2 minutes ago" in report
    assert "proxy routes to: web-0123456789ab-1f2e3d4" in report
    logs = logs_script(cfg, "worker", follow=True)
    assert (
        "docker service ls -q --filter label=cutover.app=web --filter label=cutover.stack=prod --filter label=cutover.role=worker" in logs
    )
    assert 'docker service logs --timestamps --tail 100 --follow "$s"' in logs
    single = parse_config(full_config()[0], full_config()[1], "prod", "a" * 40)
    assert "docker node ls" not in status_script(single) and "NODE" not in status_report("### containers\n", None)
