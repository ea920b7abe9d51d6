"""What a release's containers are asked for, computed without Pulumi: web's, each role's, the migration's.

Each function returns plain data (keyword arguments of `docker.Container`) so
tests can read exactly what the provider will be asked for. Values that are
secrets stay `Secret` (one made from a secret, like DATABASE_URL, with `Secret.derive`), and the
component passes on its `output`, never its revealed value. Values the
provider reads back in its own spelling (CPUs, healthcheck durations) are sent
in that spelling (components/config/provider_forms.py). The edge's containers are in
components/edge/containers.py, a cluster's services in components/cluster/service.py, and
the go-live step's shell in components/release/go_live.py.
"""

from __future__ import annotations

import shlex
from typing import Any

from components.config.model import HealthcheckConfig, MigrationsConfig, RoleConfig, Secret, StackIdentity, WebConfig
from components.config.provider_forms import go_duration
from components.host.containers import HARDENING, TMPFS_OPTIONS

Env = list[tuple[str, str | Secret]]


def shared_env(web: WebConfig, connections: Env) -> Env:
    """What every role gets: the secret env, then `connections` (how it reaches the accessories:
    components/accessories/databases.py connection_env), secrets as Secret values."""
    return [*sorted(web.secret_env.items()), *connections]


def web_env(web: WebConfig, connections: Env) -> Env:
    """The web containers' environment (APP_VERSION aside), secrets included as Secret values."""
    return [("PORT", str(web.port)), *sorted(web.env.items()), *shared_env(web, connections)]


def role_env(web: WebConfig, role: RoleConfig, connections: Env) -> Env:
    """A role's environment: its own variables, then what every role gets."""
    return [*sorted(role.env.items()), *shared_env(web, connections)]


def healthcheck(h: HealthcheckConfig) -> dict[str, Any]:
    return {
        "tests": h.test(),
        "interval": go_duration(h.interval),
        "timeout": go_duration(h.timeout),
        "retries": h.retries,
        "start_period": go_duration(h.start_period),
    }


def web_container(w: WebConfig, probe: HealthcheckConfig, image_id: Any, networks: list[Any]) -> dict[str, Any]:
    """A web container: no fixed name and no host port, so a new release is created beside the old one."""
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
        "healthcheck": healthcheck(probe),
        "wait": True,
        "wait_timeout": w.wait_timeout_s,
        "must_run": True,
        "networks_advanced": [{"name": n} for n in networks],
        **HARDENING,
    }
    if w.command:
        spec["command"] = list(w.command)
    return spec


def role_container(w: WebConfig, role: RoleConfig, image_id: Any, networks: list[Any]) -> dict[str, Any]:
    """A container of a role beside web: the release's image with the role's command and probe, and web's
    user, read-only root and tmpfs (`w`), which every role of the app shares.

    A rolling role's container starts at once and is waited for until healthy, like web's. A
    single-instance role's is only created (`start` false): the go-live step stops the old one,
    then starts it and waits for its probe (components/release/go_live.py), so two never run at once.
    It must not be `must_run` either: Read reports a created container as not running, which
    would be a change on every update (kreuzwerker v4.5.0 resource_docker_container_funcs.go:812-824).
    """
    h = role.healthcheck
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


def migration_script(identity: StackIdentity, user: str, migrations: MigrationsConfig, image: str, network: str | None) -> str:
    """Run the migration once in a container of the new image, as the app's `user`; its env file arrives on stdin."""
    argv = ["docker", "run", "--rm", "--env-file", "/dev/stdin", "--user", user, "--read-only",
            "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
            "--label", f"cutover.app={identity.app_name}", "--label", f"cutover.stack={identity.stack}", "--label", "cutover.role=migration"]  # fmt: skip
    if network:
        argv += ["--network", network]
    return "set -eu\n" + shlex.join([*argv, image, *migrations.command])
