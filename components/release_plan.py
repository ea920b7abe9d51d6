"""Which release this update deploys: a new build, a rollback, a promotion, or a given digest.

The stack reads its own previous outputs (`release`, `releases`) through a
StackReference to itself. A rollback is asked for with the environment variable
CUTOVER_ROLLBACK_TO for one `pulumi up` only, so no configuration is left behind
that would make the next ordinary deploy roll back again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pulumi

from components.config import StackConfig
from components.releases import ROLLBACK_ENV, Release, ReleaseError, next_state, redeploy_of, release_record, resolve_target


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


def _require(source: str, release: Any) -> Release:
    if not isinstance(release, Mapping) or not release.get("imageRef"):
        raise ReleaseError(f"releases.promoteFrom = {source!r}: that stack exports no release yet; deploy it first")
    return dict(release)


class ReleasePlan:
    """Decides the image to deploy before anything is built, and the records to export after."""

    deploy_ref: pulumi.Output[str] | None  # None: build the image
    version: pulumi.Output[str]
    git_sha: pulumi.Output[str]
    mode: str

    def __init__(self, cfg: StackConfig, env: Mapping[str, str], deployed_at: str | None = None) -> None:
        self.cfg = cfg
        self.deployed_at = deployed_at or now_utc()
        own = pulumi.StackReference("previous-outputs", stack_name=qualified_stack(pulumi.get_stack()))
        self.previous_current = own.get_output("release")
        self.previous_history = own.get_output("releases")
        rollback_to = env.get(ROLLBACK_ENV)
        self.new: pulumi.Output[Release] | None = None
        if rollback_to:
            target = rollback_to
            self.mode = "rollback"
            self.new = pulumi.Output.all(self.previous_current, self.previous_history).apply(
                lambda a: redeploy_of(resolve_target(target, a[0], a[1]), self.deployed_at, "rollback")
            )
        elif cfg.releases.promote_from:
            source = cfg.releases.promote_from
            self.mode = "promotion"
            other = pulumi.StackReference("promotion-source", stack_name=qualified_stack(source))
            self.new = other.get_output("release").apply(
                lambda r: redeploy_of(_require(source, r), self.deployed_at, f"promotion from {source}")
            )
        elif cfg.image.ref:
            self.mode = "given"
            self.new = pulumi.Output.from_input(
                release_record(cfg.image.ref, cfg.image.tag, cfg.image.git_sha, self.deployed_at, "image.ref")
            )
        else:
            self.mode = "build"
        # Fails (with the ReleaseError) when a rollback or promotion cannot be carried out.
        self.ready: pulumi.Output[bool] = self.new.apply(lambda _: True) if self.new is not None else pulumi.Output.from_input(True)
        if self.new is not None:
            self.deploy_ref = self.new.apply(lambda r: str(r["imageRef"]))
            self.version = self.new.apply(lambda r: str(r["tag"]))
            self.git_sha = self.new.apply(lambda r: str(r["gitSha"]))
        else:
            self.deploy_ref = None
            self.version = pulumi.Output.from_input(cfg.image.tag)
            self.git_sha = pulumi.Output.from_input(cfg.image.git_sha)

    def records(self, image_ref: pulumi.Input[str]) -> tuple[pulumi.Output[Release], pulumi.Output[list[Release]]]:
        """The `release` and `releases` outputs once `image_ref` is deployed."""
        if self.new is not None:
            new = self.new
        else:
            new = pulumi.Output.from_input(image_ref).apply(
                lambda ref: release_record(ref, self.cfg.image.tag, self.cfg.image.git_sha, self.deployed_at, "build")
            )
        state = pulumi.Output.all(self.previous_current, self.previous_history, new).apply(
            lambda a: next_state(a[0], a[1], a[2], self.cfg.releases.history_size)
        )
        return state.apply(lambda s: s[0]), state.apply(lambda s: s[1])
