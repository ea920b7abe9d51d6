"""Optional accessories: PostgreSQL and Redis on a private network, with named volumes.

They never depend on the app image, so a release never replaces them or their
data. Their volumes are retained if the stack is destroyed: nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

from components.accessories.backups import backups_volume
from components.accessories.connections import connection_env
from components.cluster.workload import network_options
from components.config.model import ClusterConfig, PostgresConfig, RedisConfig, Secret, StackIdentity
from components.host.containers import HARDENING, labels
from components.host.docker_host import DockerHost


@dataclass
class AccessoriesArgs:
    identity: StackIdentity
    host: DockerHost
    postgres: PostgresConfig
    redis: RedisConfig
    cluster: ClusterConfig  # on a cluster the private network is an overlay the services' tasks join
    # a volume for the dumps taken before each migration (PostgreSQL on, `postgres.backupsKept` above 0, migrations on)
    backups: bool = False


def postgres_spec(p: PostgresConfig) -> dict[str, Any]:
    return {
        "envs_plain": [f"POSTGRES_USER={p.user}", f"POSTGRES_DB={p.database}", "PGDATA=/var/lib/postgresql/data/pgdata"],
        "data_path": "/var/lib/postgresql/data",
        "healthcheck": {"tests": ["CMD", "pg_isready", "-U", p.user, "-d", p.database], "interval": "2s", "timeout": "3s", "retries": 15, "start_period": "10s"},
        "shm_size": 128,
    }  # fmt: skip


def redis_spec() -> dict[str, Any]:
    return {
        "command": ["sh", "-c", 'exec redis-server --appendonly yes --requirepass "$REDIS_PASSWORD"'],
        "data_path": "/data",
        "healthcheck": {"tests": ["CMD-SHELL", 'redis-cli -a "$REDIS_PASSWORD" --no-auth-warning ping | grep -q PONG'], "interval": "2s", "timeout": "3s", "retries": 15, "start_period": "5s"},
    }  # fmt: skip


class Accessories(pulumi.ComponentResource):
    """Creates the private network when any accessory is on; `containers` are what web must wait for, `env` how
    every role reaches them."""

    network: pulumi.Output[str] | None
    network_id: pulumi.Output[str] | None  # what a cluster's services name it by (components/cluster/workload.py)
    containers: list[docker.Container]
    # where the dumps taken before migrations go (PostgreSQL on, and backups kept)
    backups_volume: pulumi.Output[str] | None
    env: list[tuple[str, str | Secret]]

    def __init__(self, name: str, args: AccessoriesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:Accessories", name, None, opts)
        identity, postgres, redis = args.identity, args.postgres, args.redis
        prefix = identity.resource_prefix
        self.env = connection_env(postgres, redis)
        self.containers = []
        self.network = None
        self.network_id = None
        self.backups_volume = None
        on_host = pulumi.ResourceOptions(parent=self, provider=args.host.provider)
        if not (postgres.enabled or redis.enabled):
            self.register_outputs({})
            return
        network = docker.Network(
            f"{name}-network",
            name=f"{prefix}-private",
            internal=True,
            labels=labels(identity, "private-network"),
            **network_options(args.cluster),
            opts=on_host,
        )
        self.network = network.name
        self.network_id = network.id
        if postgres.enabled and postgres.password is not None:
            spec = postgres_spec(postgres)
            envs = postgres.password.output.apply(
                lambda pw, plain=spec["envs_plain"]: [*plain, f"POSTGRES_PASSWORD={pw}"]  # type: ignore[misc]
            )
            self.containers.append(self._service(name, "postgres", identity, postgres.image, envs, spec, network, on_host))
            if args.backups:
                self.backups_volume = docker.Volume(
                    f"{name}-backups",
                    name=backups_volume(identity),
                    labels=labels(identity, "backups-volume"),
                    # the dumps outlive the stack, like the data they save
                    opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(retain_on_delete=True)),
                ).name
        if redis.enabled and redis.password is not None:
            envs = redis.password.output.apply(lambda pw: [f"REDIS_PASSWORD={pw}"])
            self.containers.append(self._service(name, "redis", identity, redis.image, envs, redis_spec(), network, on_host))
        self.register_outputs({"network": self.network})

    def _service(
        self,
        name: str,
        role: str,
        identity: StackIdentity,
        image_name: str,
        envs: pulumi.Output[list[str]],
        spec: dict[str, Any],
        network: docker.Network,
        on_host: pulumi.ResourceOptions,
    ) -> docker.Container:
        prefix = identity.resource_prefix
        volume = docker.Volume(
            f"{name}-{role}-data",
            name=f"{prefix}-{role}-data",
            labels=labels(identity, f"{role}-volume"),
            opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(retain_on_delete=True)),
        )
        image = docker.RemoteImage(f"{name}-{role}-image", name=image_name, keep_locally=True, opts=on_host)
        extra: dict[str, Any] = {"command": spec["command"]} if "command" in spec else {}
        if "shm_size" in spec:
            extra["shm_size"] = spec["shm_size"]
        return docker.Container(
            f"{name}-{role}",
            name=f"{prefix}-{role}",
            image=image.image_id,
            envs=envs,
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=str(spec["data_path"]))],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=[role])],
            healthcheck=spec["healthcheck"],
            wait=True,
            wait_timeout=120,
            stop_timeout=30,
            labels=labels(identity, role),
            **{k: v for k, v in HARDENING.items() if k != "capabilities"},
            **extra,
            # a fixed name and data on a volume: stop the old one before its replacement starts
            opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(delete_before_replace=True)),
        )
