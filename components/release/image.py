"""The app image: built from the app context and pushed with an immutable tag, or a known digest reused.

Exports `ref`, the reference the host pulls: digest-pinned (`repo@sha256:...`)
whenever the image is in a registry. A dev stack that does not push runs the
image ID the build produced (pulumi-docker's `repoDigest` with skipPush, provider/image.go:286-294),
so a rebuild of uncommitted changes under the same tag is a new image to its containers.

pulumi-docker hashes the build context into its inputs (provider/provider.go:169-208):
changed files rebuild, and an unchanged context on the same commit builds nothing
(not even on a fresh CI runner: the image resource's Read changes nothing,
provider.go:414-425). A pushed tag is never built again (components/release/plan.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from components.config.model import ImageConfig


def build_cache_script_for(limit_mb: int) -> str:
    """BuildKit's cache on this machine cut down to `limit_mb` (`image.buildCacheKept`).

    It trims the whole cache of the engine the docker CLI of the pulumi process talks to, every project's
    builds and not this one's only: BuildKit keeps no record of which project a cache entry is for
    (`docker builder prune --filter` knows ages, IDs, types and in-use, no label). So it is off unless a stack
    asks for it, meant for a machine that builds for nothing else (a self-hosted runner).
    """
    return f"docker builder prune --force --keep-storage {limit_mb}mb"


def image_names(image: ImageConfig) -> list[str]:
    """Every name the build is pushed under: the immutable tag first, then the extra tags."""
    return [image.tagged] + [f"{image.repository}:{t}" for t in image.extra_tags if t != image.tag]


@dataclass
class AppImageArgs:
    image: ImageConfig
    # Where the release came from when no build is needed: a digest-pinned reference.
    deploy_ref: str | None = None
    # An image to use as build cache (the release running now).
    cache_from: str | None = None


class AppImage(pulumi.ComponentResource):
    ref: pulumi.Output[str]

    def __init__(self, name: str, args: AppImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:index:AppImage", name, None, opts)
        image = args.image
        child = pulumi.ResourceOptions(parent=self)
        if args.deploy_ref is not None:
            self.ref = pulumi.Output.from_input(args.deploy_ref)
            self.register_outputs({"ref": self.ref})
            return

        registry = None
        if image.push and image.registry_password is not None:
            registry = docker.RegistryArgs(
                server=image.registry,
                username=image.registry_username,
                password=image.registry_password.output,
            )
        build = docker.DockerBuildArgs(
            context=image.context,
            dockerfile=f"{image.context.rstrip('/')}/{image.dockerfile}",
            platform=image.platform,
            args={
                "APP_VERSION": image.tag,
                # the pushed image carries its cache metadata, so the next build can use it as cache;
                # the provider never sets it (provider/image.go:205-264: cacheFrom images are pulled and
                # passed to BuildKit, which uses only images built with inline cache)
                **({"BUILDKIT_INLINE_CACHE": "1"} if image.push and image.cache_from_registry else {}),
                **image.build_args,
            },
            cache_from=docker.CacheFromArgs(images=[args.cache_from])
            if args.cache_from and image.push and image.cache_from_registry
            else None,
        )
        names = image_names(image)
        primary = docker.Image(f"{name}-build", image_name=names[0], build=build, registry=registry, skip_push=not image.push, opts=child)
        for extra in names[1:]:
            # The same build again (a cache hit), pushed under the extra tag after the immutable one.
            docker.Image(
                f"{name}-tag-{extra.rsplit(':', 1)[1]}",
                image_name=extra,
                build=build,
                registry=registry,
                skip_push=not image.push,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[primary]),
            )
        self.ref = primary.repo_digest  # repo@sha256:... when pushed, the built image's ID otherwise
        if image.build_cache_mb > 0:
            # BuildKit's cache on the machine that builds, cut down after each build. It runs on `pulumi up` only:
            # pulumi-command v1.2.1 provider/pkg/provider/local/commandController.go, Command.Create and
            # Command.Update return before running anything when req.DryRun (a preview) is set; it has no
            # `delete`, so a destroy runs nothing either.
            command.local.Command(
                f"{name}-build-cache",
                create=build_cache_script_for(image.build_cache_mb),
                triggers=[primary.repo_digest],
                interpreter=["/bin/sh", "-c"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[primary]),
            )
        self.register_outputs({"ref": self.ref, "tag": image.tag})
