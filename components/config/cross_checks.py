"""The checks that span sections: each reads what several sections' readers returned.

- a wait timeout that a slow boot (start period plus one interval) could never pass;
- an env name set twice, or one the program sets itself (DATABASE_URL, REDIS_URL, ...);
- a build context, Dockerfile or file that does not exist;
- the pipeline's stacks against the hosts their stack files name.

Each records its problems on the reader (components/config/checks.py), like a section's reader.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from components.config.checks import (
    _Reader,
    duration_seconds,
)
from components.config.model import (
    ClusterConfig,
    GitHubConfig,
    HealthcheckConfig,
    HostConfig,
    ImageConfig,
    PostgresConfig,
    RedisConfig,
    RoleConfig,
    WebConfig,
)

BOOT = "a container that takes its whole start period to boot is healthy no sooner"


def _check_pipeline_hosts(
    r: _Reader, github: GitHubConfig, stack: str, host: HostConfig, stack_host: Callable[[str], str | None] | None
) -> None:
    """Every stack the workflows deploy is on a server.

    The deploy, preview, drift and rollback jobs run on a GitHub-hosted runner (components/github/workflows.py
    WorkflowSettings.runs_on), where a stack whose host.url is the local engine reaches the runner's own Docker
    engine: its release is thrown away with the job, and every stack after it waits for it. Such a stack (dev) is
    deployed from the machine it runs on (make deploy). This stack's host is known; another's from its stack file."""
    if not github.enabled:
        return
    local = []
    for name in github.stacks:
        url = host.url if name == stack else stack_host(name) if stack_host else None
        if url is not None and not url.startswith("ssh://"):
            local.append((name, url, "this stack" if name == stack else f"Pulumi.{name}.yaml"))
    if not local:
        return
    names = ", ".join(n for n, _, _ in local)
    found = "; ".join(f"stack {n}'s host.url is {u} ({where})" for n, u, where in local)
    shown = r.given.get("github.stacks", github.stacks)
    r.fail(
        "github.stacks",
        shown,
        "only stacks on a server (host.url 'ssh://user@host:port'): the workflows deploy and preview each one from a"
        f" GitHub-hosted runner, and {found}, which there is the runner's own Docker engine, gone when the job ends;"
        f" leave {names} out (deploy it from its machine: make deploy) or give it an ssh:// host.url",
    )


def _check_waits(r: _Reader, web: WebConfig, healthcheck: HealthcheckConfig, roles: tuple[RoleConfig, ...], cluster: ClusterConfig) -> None:
    """Each wait for a healthy container at least its health check's start period plus one interval.

    Docker runs the first probe one interval after the container starts and each next one an interval after
    the last ends (moby v20.10.24 daemon/health.go monitor), and a failure inside the start period does not
    count (handleProbeResult): a container that takes its whole start period to boot passes a probe no sooner
    than start period + interval. A shorter wait (the provider's wait_timeout, a handover's wait, a service's
    converge timeout) refuses that slow boot every time, though the health check would have passed it."""
    waits: list[tuple[str, str, str, str, float]] = []  # (wait key, its default, health check key, what the wait needs, need in s)
    if web.enabled:
        waits.append(("web.waitTimeout", "2m", "healthcheck", *_boot(healthcheck.start_period, healthcheck.interval)))
    for role in roles:
        h = role.healthcheck
        waits.append((f"roles.{role.name}.waitTimeout", "2m", f"roles.{role.name}.healthcheck", *_boot(h.start_period, h.interval)))
    given = {"web.waitTimeout": web.wait_timeout_s, **{f"roles.{role.name}.waitTimeout": role.wait_timeout_s for role in roles}}
    for key, default, hc, text, need in waits:
        if given[key] < need:
            r.fail(key, r.given.get(key, default), f"at least {math.ceil(need)}s, {hc}.startPeriod plus one {hc}.interval ({text}): {BOOT}")
    if cluster.enabled and waits:
        key, default, hc, text, need = max(waits, key=lambda w: w[4])
        if cluster.converge_timeout_s < need:
            r.fail(
                "cluster.convergeTimeout",
                r.given.get("cluster.convergeTimeout", "3m"),
                f"at least {math.ceil(need)}s, {hc}.startPeriod plus one {hc}.interval ({text}): {BOOT}",
            )


def _boot(start_period: str, interval: str) -> tuple[str, float]:
    return f"{start_period} + {interval}", duration_seconds(start_period) + duration_seconds(interval)


def _check_env_names(r: _Reader, web: WebConfig, roles: tuple[RoleConfig, ...], postgres: PostgresConfig, redis: RedisConfig) -> None:
    """No environment variable set twice in one container.

    The provider keeps a container's env as a set of NAME=value strings ordered by their hash (kreuzwerker v4.5.0
    internal/provider/resource_docker_container.go "env": TypeSet, schema.HashString) and the engine passes both
    to the process: which of two values it reads is an accident of that order."""
    set_by = {"APP_VERSION": "the release's tag"}
    if postgres.enabled:
        set_by["DATABASE_URL"] = "postgres.enabled"
    if redis.enabled:
        set_by["REDIS_URL"] = "redis.enabled"
    web_set_by = {"PORT": "web.port", **set_by}
    for name in sorted(web.env):
        if name in web_set_by:
            r.fail(f"web.env.{name}", web.env[name], f"another name: {name} is set from {web_set_by[name]}")
    for name in sorted(web.secret_env):
        if name in web_set_by:
            r.problems.append(f"{r.ns}:secretEnv.{name} = [secret]: expected another name: {name} is set from {web_set_by[name]}")
    for role in roles:
        for name in sorted(role.env):
            if name in set_by:
                r.fail(f"roles.{role.name}.env.{name}", role.env[name], f"another name: {name} is set from {set_by[name]}")
            elif name in web.secret_env:
                r.fail(f"roles.{role.name}.env.{name}", role.env[name], f"{name} only once: it is also in secretEnv")


def _check_build_files(r: _Reader, image: ImageConfig, promote_from: str | None, root: str | None) -> None:
    """The build context is a directory and the Dockerfile a file in it, when this update may build.

    Relative paths are read from the project's directory, where Pulumi starts the program and the docker
    provider (pulumi/pulumi sdk/go/common/resource/plugin/provider_plugin.go NewProvider: newPlugin with
    ctx.Pwd; plugin.go ExecPlugin: cmd.Dir = pwd). The provider looks for the Dockerfile only once the image
    is registered (pulumi-docker provider/provider.go Check, "could not open dockerfile"), beside resources
    that do not wait for it. No build, no check: a digest (image.ref) or a promotion deploys an image as it is."""
    if root is None or image.ref is not None or promote_from is not None:
        return
    context = Path(root, image.context)
    if not context.is_dir():
        state = "is not a directory" if context.exists() else "does not exist"
        r.fail("image.context", image.context, f"the build context, a directory: {context} {state}")
        return
    # the path components/release/image.py gives the provider
    dockerfile = Path(root, f"{image.context.rstrip('/')}/{image.dockerfile}")
    if not dockerfile.is_file():
        state = "is not a file" if dockerfile.exists() else "does not exist"
        r.fail("image.dockerfile", image.dockerfile, f"a Dockerfile, relative to image.context: {dockerfile} {state}")
