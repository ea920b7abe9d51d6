"""Which release this update deploys: a new build, a tag already pushed, a rollback, a promotion, or a given digest.

The stack reads its own previous outputs (`release`, `releases`) through a
StackReference to itself, before any resource is registered, so an impossible
rollback or promotion stops the program before anything changes. A rollback is
asked for with the environment variable CUTOVER_ROLLBACK_TO for one `pulumi up`
only, so no configuration is left behind that would make the next ordinary
deploy roll back again.

`plan_release` is pure; `read_stack_outputs` is the Pulumi-facing read, awaited in the program's
async entrypoint (__main__.py, `pulumi.run`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pulumi

from components.config.checks import DIGEST_REF
from components.config.model import ROLLBACK_ENV, StackConfig
from components.release.records import Release, ReleaseError, next_state, redeploy_of, release_record, resolve_target


def qualified_stack(name: str) -> str:
    """'dev' -> 'organization/cutover/dev' (the current organization and project)."""
    parts = name.split("/")
    if len(parts) == 3:
        return name
    if len(parts) == 2:
        return f"{pulumi.get_organization()}/{name}"
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{name}"


def now_utc() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


async def read_stack_outputs(resource_name: str, stack: str, names: tuple[str, ...]) -> dict[str, Any]:
    """The named outputs of a stack, as plain values. Awaited in the program's async entrypoint (`pulumi.run`,
    __main__.py) before any resource of the release is registered: StackReference.get_output_details is the SDK's
    public read of an output's value (pulumi/pulumi sdk/python/lib/pulumi/stack_reference.py), and pulumi.run the
    public way to await it in a program (sdk/python/lib/pulumi/runtime/stack.py run, awaited by run_in_stack)."""
    ref = pulumi.StackReference(resource_name, stack_name=qualified_stack(stack))
    values: dict[str, Any] = {}
    for name in names:
        details = await ref.get_output_details(name)
        values[name] = details.value if details.value is not None else details.secret_value
    return values


@dataclass(frozen=True)
class ReleasePlan:
    mode: str  # "build", "redeploy" (of a tag already pushed), "rollback", "promotion" or "given"
    version: str  # the release's tag, reported by the app as its version
    git_sha: str
    previous: Release | None
    history: list[Release] = field(default_factory=list)
    release: Release | None = None  # the record, when it is known before the build
    history_size: int = 10

    @property
    def deploy_ref(self) -> str | None:
        """The digest to deploy without building, or None to build."""
        return str(self.release["imageRef"]) if self.release else None

    @property
    def key(self) -> str:
        """Names the release's containers, so each release gets containers of its own."""
        return self.version[:12] if len(self.version) == 40 else self.version

    @property
    def cache_from(self) -> str | None:
        """The image running now: the build's best cache."""
        return str(self.previous["imageRef"]) if self.previous and "@sha256:" in str(self.previous.get("imageRef")) else None

    def records(self, image_ref: str, watched_s: int = 0, roles: dict[str, Any] | None = None) -> tuple[Release, list[Release]]:
        """The `release` and `releases` outputs once `image_ref` is deployed, passed `watched_s` of probation
        and runs `roles` (what runs in each role)."""
        new = self.release or release_record(image_ref, self.version, self.git_sha, now_utc(), "build")
        return next_state(self.previous, self.history, {**new, "probation": f"{watched_s}s", "roles": roles or {}}, self.history_size)


def role_summary(cfg: StackConfig) -> dict[str, Any]:
    """What runs in each role of a release: replicas, and the command when it is not the image's."""
    summary: dict[str, Any] = {}
    if cfg.web.enabled:
        summary["web"] = {"replicas": cfg.web.replicas, **({"command": list(cfg.web.command)} if cfg.web.command else {})}
    for role in cfg.roles:
        summary[role.name] = {"replicas": role.replicas, "command": list(role.command), **({} if role.overlap else {"overlap": False})}
    return summary


def plan_release(
    cfg: StackConfig,
    env: Mapping[str, str],
    previous: Any,
    history: Any,
    promoted: Any = None,
    deployed_at: str | None = None,
) -> ReleasePlan:
    """Decide what to deploy; raises ReleaseError, naming what was asked and what exists, when it cannot be done."""
    at = deployed_at or now_utc()
    previous = dict(previous) if isinstance(previous, Mapping) else None
    history = [dict(r) for r in history] if isinstance(history, list) else []
    common = {"previous": previous, "history": history, "history_size": cfg.releases.history_size}
    target = env.get(ROLLBACK_ENV, "").strip()
    if target:
        release = redeploy_of(resolve_target(target, previous, history), at, "rollback")
        return ReleasePlan("rollback", str(release["tag"]), str(release["gitSha"]), release=release, **common)
    if cfg.releases.promote_from:
        source = cfg.releases.promote_from
        if not isinstance(promoted, Mapping) or not DIGEST_REF.match(str(promoted.get("imageRef", ""))):
            shown = promoted.get("imageRef") if isinstance(promoted, Mapping) else None
            raise ReleaseError(
                f"releases.promoteFrom = {source!r}: expected a stack whose release is a digest-pinned image "
                f"(repo@sha256:...) in a registry; it exports {shown or 'no release'}"
            )
        release = redeploy_of(promoted, at, f"promotion from {source}")
        return ReleasePlan("promotion", str(release["tag"]), str(release["gitSha"]), release=release, **common)
    if cfg.image.ref:
        release = release_record(cfg.image.ref, cfg.image.tag, cfg.image.git_sha, at, "image.ref")
        return ReleasePlan("given", cfg.image.tag, cfg.image.git_sha, release=release, **common)
    pushed = released_tag(cfg.image.tag, previous, history) if cfg.image.push else None
    if pushed is not None:
        # A tag is pushed once: building it again would push other bytes under the same name (builds
        # are not reproducible). The release that has it is deployed again, without a build.
        release = redeploy_of(pushed, at, f"redeploy of tag {cfg.image.tag}")
        return ReleasePlan("redeploy", cfg.image.tag, str(pushed.get("gitSha", cfg.image.git_sha)), release=release, **common)
    return ReleasePlan("build", cfg.image.tag, cfg.image.git_sha, **common)


def released_tag(tag: str, current: Release | None, history: list[Release]) -> Release | None:
    """The recorded release (the current one first) whose image was pushed under `tag`, if any."""
    for release in ([current] if current else []) + history:
        if release.get("tag") == tag and DIGEST_REF.match(str(release.get("imageRef", ""))):
            return release
    return None


async def load_release_plan(cfg: StackConfig, env: Mapping[str, str]) -> ReleasePlan:
    own = await read_stack_outputs("previous-outputs", pulumi.get_stack(), ("release", "releases"))
    promoted = None
    if cfg.releases.promote_from and not env.get(ROLLBACK_ENV, "").strip():
        promoted = (await read_stack_outputs("promotion-source", cfg.releases.promote_from, ("release",)))["release"]
    return plan_release(cfg, env, own["release"], own["releases"], promoted)
