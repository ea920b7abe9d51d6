"""Releases: the record a stack exports, its bounded history, and which release a rollback means.

Pure functions over plain dicts, as they appear in the stack's outputs:
    {"imageRef": "ghcr.io/acme/web@sha256:...", "tag": "...", "gitSha": "...",
     "deployedAt": "2026-11-22T10:00:00Z", "source": "build"}
The program reads its own previous outputs through a StackReference and calls
these inside an apply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from components.config.model import ROLLBACK_ENV

Release = dict[str, Any]

SHA = re.compile(r"^[0-9a-f]{7,40}$")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}$")


class ReleaseError(ValueError):
    """A rollback or promotion that cannot be carried out; raised before anything changes."""


def digest_of(ref: str) -> str:
    m = DIGEST.search(ref)
    return m.group(0) if m else ref


def same_release(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    return bool(a and b and digest_of(str(a.get("imageRef", ""))) == digest_of(str(b.get("imageRef", ""))))


def describe(release: Mapping[str, Any]) -> str:
    return f"{release.get('tag', '?')} ({digest_of(str(release.get('imageRef', '?')))[:19]}…, deployed {release.get('deployedAt', '?')})"


def next_state(
    previous_current: Release | None,
    previous_history: Sequence[Release] | None,
    new: Release,
    limit: int,
) -> tuple[Release, list[Release]]:
    """The current release and history after deploying `new`.

    Deploying what already runs changes nothing (it keeps its deployedAt and
    source); otherwise the previous current release goes to the top of the
    history, which holds at most `limit` entries, newest first.
    """
    history = [dict(r) for r in (previous_history or [])]
    if previous_current and same_release(previous_current, new):
        return dict(previous_current), history[:limit]
    if previous_current:
        history.insert(0, dict(previous_current))
    deduped: list[Release] = []
    for r in history:
        if not (deduped and same_release(deduped[-1], r)):
            deduped.append(r)
    return dict(new), deduped[:limit]


def resolve_target(target: str, current: Release | None, history: Sequence[Release] | None) -> Release:
    """The release a rollback target names: 'previous' or '1', 'N' releases back, a git SHA, or a digest.

    A git SHA or digest may also name the release running now (redeploying it changes
    nothing): the deploy workflow rolls back to the digest it saw before a failed update.
    """
    history = list(history or [])
    target = target.strip()
    listing = "\n".join(f"  {i}. {describe(r)}  git {str(r.get('gitSha', '?'))[:12]}" for i, r in enumerate(history, 1)) or "  (nothing)"
    if target in ("", "previous") or (target.isdigit() and len(target) < 7):
        if not history:
            now = f"it runs {describe(current)}" if current else "it has never been deployed"
            raise ReleaseError(f"cannot roll back: this stack has no earlier release ({now})")
        n = int(target) if target.isdigit() else 1
        if 1 <= n <= len(history):
            return dict(history[n - 1])
        raise ReleaseError(f"{ROLLBACK_ENV}={target}: expected a number from 1 to {len(history)}; the history holds:\n{listing}")
    candidates = ([dict(current)] if current else []) + history
    if DIGEST.search(target):
        found = [r for r in candidates if digest_of(str(r.get("imageRef", ""))) == digest_of(target)]
    elif SHA.match(target):
        found = [r for r in candidates if str(r.get("gitSha", "")).startswith(target)]
    else:
        raise ReleaseError(
            f"{ROLLBACK_ENV}={target!r}: expected 'previous', a number of releases back, a git SHA (7 to 40 hex digits) or an image digest (sha256:...)"
        )
    if not found:
        raise ReleaseError(f"{ROLLBACK_ENV}={target}: no such release running or in the history; the history holds:\n{listing}")
    return dict(found[0])


def release_record(image_ref: str, tag: str, git_sha: str, deployed_at: str, source: str) -> Release:
    return {"imageRef": image_ref, "tag": tag, "gitSha": git_sha, "deployedAt": deployed_at, "source": source}


def redeploy_of(release: Mapping[str, Any], deployed_at: str, source: str) -> Release:
    """A record for deploying an earlier (or another stack's) release again, without a build."""
    return release_record(str(release["imageRef"]), str(release.get("tag", "")), str(release.get("gitSha", "")), deployed_at, source)
