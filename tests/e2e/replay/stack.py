"""A stack the e2e tests deploy: its config, its state (an Engine) and `pulumi up` as a user runs it."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.e2e.replay.engine import ApplyResult, Engine, EngineError
from tests.harness import ProgramFailedError, ProgramRun, run_program

PROJECT = "cutover"
SECRET_KEYS = frozenset({"sshPrivateKey", "registryPassword"})


def e2e_config(
    *,
    ssh_url: str,
    known_hosts: str,
    private_key: str,
    registry: str,
    registry_user: str,
    registry_password: str,
    http_port: int,
    replicas: int = 2,
    migrations: bool = True,
) -> dict[str, Any]:
    """A stack for this machine: the host over ssh (pinned key), the image pushed to the
    loopback registry, built offline from app/wheels, the edge on 127.0.0.1, short timeouts."""
    config: dict[str, Any] = {
        "appName": "web",
        "host": {"url": ssh_url, "knownHosts": known_hosts},
        "sshPrivateKey": private_key,
        "image": {
            "repository": f"{registry}/cutover/web",
            "push": True,
            "registryUsername": registry_user,
            "context": "./app",
            # app/Dockerfile: wheels from app/wheels/, no index (no registry reachable from builds here)
            "buildArgs": {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/build"},
        },
        "registryPassword": registry_password,
        "proxy": {"httpPort": http_port, "httpsPort": None, "bindAddress": "127.0.0.1", "image": "caddy:2", "drain": "2s"},
        "web": {"replicas": replicas, "stopTimeout": "10s", "waitTimeout": "20s"},
        "healthcheck": {"interval": "1s", "startPeriod": "10s", "retries": 2},
        "verify": {"interval": "1s", "attempts": 15},
        # a short probation keeps every scenario's release on it; the probation scenarios set their own
        "releases": {"historySize": 10, "probation": "3s"},
    }
    if migrations:
        config["migrations"] = {"command": ["python", "-m", "migrate"]}
    return config


def e2e_config_on(registry: Any, host: Any, http_port: int, **more: Any) -> dict[str, Any]:
    """e2e_config for the loopback registry and ssh host the tests started (tests/e2e/infra.py)."""
    return e2e_config(
        ssh_url=host.url, known_hosts=host.known_hosts_line, private_key=host.private_key, registry=registry.address,
        registry_user=registry.user, registry_password=registry.password, http_port=http_port, **more,
    )  # fmt: skip


def remove_stack_objects(stack: str, app: str = "web") -> None:
    """Every container, network and volume of the stack on this machine: by its labels (what the program
    labels), and networks and volumes by name too. Run before a module's first update as well as after its
    last, so that what an interrupted run left on the engine (it keeps its networks and volumes across a
    restart) cannot collide with the new run's names (HTTP 409 on POST /networks/create)."""
    from tests.e2e import infra

    by_label = ["--filter", f"label=cutover.stack={stack}", "--filter", f"label=cutover.app={app}"]
    for cid in infra.docker("ps", "-aq", *by_label, check=False).stdout.split():
        infra.remove_container(cid)
    prefix = f"{app}-{stack}-"
    for kind in ("network", "volume"):
        labelled = infra.docker(kind, "ls", "-q", *by_label, check=False).stdout.split()
        named = [n for n in infra.docker(kind, "ls", "--format={{.Name}}", check=False).stdout.split() if n.startswith(prefix)]
        for name in dict.fromkeys(labelled + named):
            infra.docker(kind, "rm", name, check=False)


def remove_leftovers(engine: Engine, stack: str, app: str = "web") -> None:
    """`pulumi destroy`, then whatever a failed run may have left of the stack on this machine
    (remove_stack_objects), and the engine's own files."""
    from tests.e2e import infra

    try:
        engine.destroy()
    except Exception as exc:  # keep tearing down
        infra.log(f"destroy failed, removing by label: {exc}")
    remove_stack_objects(stack, app)
    engine.close()


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of config objects (overrides win)."""
    out = dict(base)
    for k, v in overrides.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def fake_sha(label: str, salt: str = "") -> str:
    """A 40-hex git SHA standing for a release name ('v1', 'v2', ...)."""
    return hashlib.sha1(f"{salt}:{label}".encode()).hexdigest()  # noqa: S324 - an identifier, not security


class Stack:
    """One stack: its config and its state (the engine), whose outputs the program reads back
    through its StackReference to itself. The program runs on the engine's machine: before
    pulumi starts, the deploy key goes into that machine's ssh agent (SSH_AUTH_SOCK of
    `engine.env`), as `make` and each workflow job load it; the program only checks it is there."""

    def __init__(self, engine: Engine, config: Mapping[str, Any], secret_keys: frozenset[str] = SECRET_KEYS, name: str = "e2e") -> None:
        self.engine = engine
        self.config = dict(config)
        self.secret_keys = set(secret_keys)
        self.name = name
        self.last_run: ProgramRun | None = None

    @property
    def qualified(self) -> str:
        return f"organization/{PROJECT}/{self.name}"

    @property
    def outputs(self) -> dict[str, Any]:
        return self.engine.outputs

    def load_key(self, overrides: Mapping[str, Any] | None = None) -> None:
        """What `make` and the workflows' deploy-key step do before pulumi starts:
        `pulumi config get sshPrivateKey | ssh-add -t 3600 -` into the machine's agent, for an ssh:// host."""
        from components.config.model import HostConfig, Secret
        from components.host.ssh import load_deploy_key

        config = merge(self.config, overrides or {})
        url = str((config.get("host") or {}).get("url", ""))
        if url.startswith("ssh://") and config.get("sshPrivateKey"):
            load_deploy_key(HostConfig(url=url, private_key=Secret(str(config["sshPrivateKey"]))), self.engine.env)

    def program(
        self, *, sha: str, rollback_to: str | None = None, overrides: Mapping[str, Any] | None = None, load_key: bool = True
    ) -> ProgramRun:
        env = {"CUTOVER_GIT_SHA": sha}
        if rollback_to:
            env["CUTOVER_ROLLBACK_TO"] = rollback_to
        config = merge(self.config, overrides or {})
        if load_key:
            self.load_key(overrides)
        try:
            run = run_program(
                config,
                self.secret_keys,
                stack=self.name,
                stack_outputs={self.qualified: self.engine.outputs},
                env=env,
                ssh_agent_env=self.engine.env,
            )
        except ProgramFailedError as exc:
            raise EngineError(f"the program failed before anything was applied: {exc}") from exc
        self.last_run = run
        return run

    def up(
        self,
        *,
        sha: str,
        rollback_to: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        refresh: bool = False,
        run_program: bool = False,
        load_key: bool = True,
    ) -> ApplyResult:
        """`[CUTOVER_ROLLBACK_TO=...] pulumi up [--refresh [--run-program]]`, after the deploy key was loaded
        into the machine's agent (`load_key`, as make and the workflows do; False: a shell that skipped it).

        `--refresh` alone reads every resource before the program runs, with the provider the state
        recorded; with `--run-program` each one as the program declares it.
        """
        if load_key:
            self.load_key(overrides)
        pre_refresh = None
        if refresh and not run_program:
            pre_refresh = self.engine.refresh()
        run = self.program(sha=sha, rollback_to=rollback_to, overrides=overrides, load_key=False)
        result = self.engine.up(run, refresh=refresh and run_program, run_program=run_program)
        if pre_refresh is not None:
            result.ops[:0] = pre_refresh.ops
        return result


def ensure_app_wheels() -> Path:
    """app/Dockerfile installs from app/wheels/ when built with PIP_NO_INDEX=1 (no package index is
    reachable from builds here): fill that git-ignored folder from the wheel cache of tests/e2e/infra.py."""
    from tests.e2e import infra

    source = infra.download_wheels(infra.APP_DIR / "requirements.txt")
    target = infra.APP_DIR / "wheels"
    target.mkdir(exist_ok=True)
    wanted = {w.name for w in source.glob("*.whl")}
    for stale in target.glob("*.whl"):
        if stale.name not in wanted:
            stale.unlink()
    for wheel in source.glob("*.whl"):
        if not (target / wheel.name).exists():
            shutil.copy2(wheel, target / wheel.name)
    return target
