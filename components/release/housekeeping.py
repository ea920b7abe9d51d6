"""Bounded disk: what each release leaves behind is cleared, never what a recent release needs.

- `prune_images_script`: on the server, the app's images other than the ones a release keeps
  (`releases.imagesKept`: this release's and those of the releases just before it, which a
  rollback then needs no pull for) are removed. An image a container still uses is never
  removed (`docker rmi` refuses it, and the script goes on): the old release's containers are
  deleted only after this step, so its image goes with the next release.
The build cache on the machine that builds is cut down after each build by the image
component (components/release/image.py).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pulumi

from components.host.docker_host import DockerHost
from components.release.records import Release, digest_of


def kept_images(current: Release, history: list[Release], keep: int) -> list[str]:
    """The image references a release keeps on the server: its own first, then the newest of the history."""
    refs: list[str] = []
    for release in [current, *history]:
        ref = str(release.get("imageRef", ""))
        if ref and ref not in refs:
            refs.append(ref)
    return refs[:keep]


def prune_images_script(repository: str, keep: list[str]) -> str:
    """Remove the app's images (`repository`'s) on the server but those in `keep` (repo@sha256:… or, for dev, an image ID).

    An image is kept when any of its names is: its digest in the repository, or its ID. The others are
    removed by ID, so every name the image has in the repository goes with it: on a server that also
    builds (or that a dev stack runs on) an image has a tag besides its digest, and `docker rmi
    repo@sha256:…` would only take the digest off it and leave the image. Without force, Docker refuses
    an image a container still uses, or one another repository names too, and the script goes on.
    """
    keep_ids = " ".join(sorted({digest_of(ref) for ref in keep}))
    listing = f"docker images --digests --no-trunc --format '{{{{.Digest}}}}={{{{.ID}}}}' {shlex.quote(repository)}"
    return "\n".join(
        [
            "set -eu",
            f"keep={shlex.quote(' ' + keep_ids + ' ')}",
            f'if ! images="$({listing})"; then echo "could not list the images of {repository}: none removed" >&2; exit 0; fi',
            'kept=" "',
            "for row in $images; do",
            '  case "$keep" in *" ${row%%=*} "*|*" ${row##*=} "*) kept="$kept${row##*=} " ;; esac',
            "done",
            'removed=0; tried=" "',
            "for row in $images; do",
            '  id="${row##*=}"',
            '  case "$kept$tried" in *" $id "*) continue ;; esac',
            '  tried="$tried$id "',
            '  if docker rmi "$id" >/dev/null 2>&1; then echo "removed $id"; removed=$((removed+1)); fi',
            "done",
            f'echo "kept {len(keep)} image(s) of {repository}; removed $removed"',
        ]
    )


@dataclass
class HousekeepingArgs:
    repository: str  # the app image's (image.repository)
    host: DockerHost
    # the images this release keeps on the server, known once it is recorded
    keep: pulumi.Input[list[str]]
    after: list[pulumi.Resource]


class Housekeeping(pulumi.ComponentResource):
    """After a release went live: the app images it no longer needs are removed from the server."""

    def __init__(self, name: str, args: HousekeepingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:Housekeeping", name, None, opts)
        keep = pulumi.Output.from_input(args.keep)
        args.host.command(
            f"{name}-prune-images",
            create=keep.apply(lambda refs: prune_images_script(args.repository, list(refs))),
            # runs again exactly when the set of images to keep changes (a new release)
            triggers=[keep],
            update=":",
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.after),
        )
        self.register_outputs({})
