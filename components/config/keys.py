"""The config reference: every key the program reads, its default, and what it is for.

This is README's table in "Configuration", and its one source: `make config-reference`
(python -m components.config.reference --write README.md) writes the table from these rows, and
tests/test_config_reference.py fails when README's differs. The tests also hold the rows to the
readers: every key the readers know (components/config/checks.py KNOWN_KEYS, SECTION_KEYS,
SECRET_KEYS) has a row and no row names another, and each default given as a value
(`default=`) is what the reader takes when the key is not set. What a reader refuses, and why,
is in its message (`<project>:key = value: expected ...`); a row says what the key is for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

# a default that is not a value: said in words (`shown`)
UNSET: Final[Any] = object()
REQUIRED: Final = "(required)"
NONE: Final = "none"


@dataclass(frozen=True)
class Key:
    """One row: the key as it is set (`web.replicas`; `roles.<name>.command` for each role), what it is for
    (markdown, one line), and its default: a value the reader takes when the key is not set, or words."""

    name: str
    meaning: str
    default: Any = UNSET
    shown: str = ""
    secret: bool = False  # a key of its own, set with `pulumi config set --secret`
    # a row for a whole section documented elsewhere: the keys it names
    covers: tuple[str, ...] = ()

    @property
    def default_text(self) -> str:
        if self.default is UNSET:
            return self.shown
        value = self.default if isinstance(self.default, str) else json.dumps(self.default)
        return f"`{value}`"

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys this row documents."""
        return self.covers or (self.name,)


def _in_brackets(rows: tuple[Key, ...], prefix: str) -> str:
    """`command` (required), `interval` (`5s`), ...: the keys under `prefix` and their defaults."""
    return ", ".join(f"`{k.name.removeprefix(prefix)}` ({'required' if k.shown == REQUIRED else k.default_text})" for k in rows)


# a role's own health check, also summed up in the row of `roles.<name>.healthcheck`
_ROLE_PROBE = (
    Key("roles.<name>.healthcheck.command", 'e.g. `["python", "-m", "heartbeat", "30"]`: exit 0 while the role is well', shown=REQUIRED),
    Key("roles.<name>.healthcheck.interval", "above zero (as for `healthcheck.*`)", default="5s"),
    Key("roles.<name>.healthcheck.timeout", "above zero", default="3s"),
    Key("roles.<name>.healthcheck.retries", "", default=3),
    Key("roles.<name>.healthcheck.startPeriod", "above zero", default="10s"),
)

# The keys of the `github` section, named in one row: "Setting up GitHub" says what each does.
GITHUB_KEYS = (
    "enabled", "owner", "repository", "environment", "stacks", "branch", "reviewers", "waitTimer", "variables",
    "publicUrl", "manageRepositoryFiles", "filesBranch", "protectBranch", "adminBypass",
)  # fmt: skip

KEYS: tuple[Key, ...] = (
    Key("appName", "lowercase name; networks, volumes and the proxy are named `<appName>-<stack>-…` on the host", shown=REQUIRED),
    Key("image.repository", "e.g. `ghcr.io/acme/web`; lowercase, no tag", shown=REQUIRED),
    Key(
        "image.tag",
        "immutable tag; `latest` is refused; a tag already released is deployed again by its digest, never built and pushed twice; a pushed build of uncommitted changes under the commit's tag is refused",
        shown="git SHA (`CUTOVER_GIT_SHA`, `GITHUB_SHA`, `git rev-parse HEAD`)",
    ),
    Key("image.extraTags", "more tags pushed for the same build", default=[]),
    Key(
        "image.context",
        "build context: a directory that exists (not looked for when nothing is built: `image.ref`, `releases.promoteFrom`, a rollback)",
        default="./app",
    ),
    Key("image.dockerfile", "relative to the context; a file that exists", default="Dockerfile"),
    Key("image.platform", "target platform, e.g. `linux/amd64` for a server (prod sets it)", shown="the engine's own"),
    Key("image.buildArgs", "build arguments (`APP_VERSION` is set to the tag)", default={}),
    Key(
        "image.push",
        "push to the registry (dev: `false`: its containers run the built image by ID, so uncommitted changes deploy)",
        default=True,
    ),
    Key("image.cacheFromRegistry", "use the running release's image as build cache (pushed with inline cache metadata)", default=True),
    Key("image.registryUsername", "registry login; password in `registryPassword`", shown=NONE),
    Key("image.ref", "deploy this `repo@sha256:…` instead of building", shown=NONE),
    Key(
        "image.buildCacheKept",
        "the build cache left on the machine that builds, after each build on `pulumi up`, e.g. `10g`: prunes that engine's whole BuildKit cache, every project's ([Disk](#disk))",
        shown="`0` (never pruned)",
    ),
    Key(
        "host.url",
        "or `ssh://user@host:port`; a stack the pipeline deploys (`github.stacks`) needs `ssh://`",
        default="unix:///var/run/docker.sock",
    ),
    Key(
        "host.knownHosts",
        "the server's pinned ed25519 or ECDSA host key, one line for the host and port of `host.url` (`ssh-keyscan -t ed25519 -p PORT HOST`); an `ssh-rsa` pin is refused (pulumi-command would offer only SHA-1 `ssh-rsa`, which OpenSSH 8.8+ refuses)",
        shown="none (required for ssh)",
    ),
    Key("web.enabled", "`false`: no web role and no proxy (a worker or a bot alone; then `roles` must name one)", default=True),
    Key("web.port", "the app's port in its container", default=8000),
    Key("web.replicas", "web containers (1–20)", default=1),
    Key(
        "web.env",
        "plain environment variables; not `PORT` (from `web.port`), `APP_VERSION` (the tag), `DATABASE_URL` or `REDIS_URL` with their accessory on, nor a name also in `secretEnv`: one name, one value",
        default={},
    ),
    Key(
        "web.memory",
        "memory limit, swap included (no swap on top); at least `6m` (Docker's minimum; `0` would be no limit)",
        default="512m",
    ),
    Key(
        "web.cpus",
        "CPU limit; kept as the docker provider reads it back (`1` is sent as `1.0`), values it cannot read back (`0.01`) are refused",
        default=1,
    ),
    Key("web.stopTimeout", "SIGTERM grace before the kill; whole seconds, at least `1s` (`0` kills at once)", default="30s"),
    Key(
        "web.waitTimeout",
        "how long a new container may take to become healthy; whole seconds, at least `healthcheck.startPeriod` + `healthcheck.interval` (a slow boot is healthy no sooner)",
        default="2m",
    ),
    Key("web.user", "user the app runs as", default="10001:10001"),
    Key("web.readOnly", "read-only root filesystem", default=True),
    Key("web.tmpfs", "writable tmpfs mounts", default=["/tmp"]),
    Key("web.command", "command override", shown="image default"),
    Key("roles.<name>.command", 'a role beside web (see [Roles](#roles)): its command, like `["python", "-m", "worker"]`', shown=REQUIRED),
    Key(
        "roles.<name>.healthcheck", "its probe, needing no HTTP: " + _in_brackets(_ROLE_PROBE, "roles.<name>.healthcheck."), shown=REQUIRED
    ),
    *_ROLE_PROBE,
    Key("roles.<name>.replicas", "containers (1–20)", default=1),
    Key(
        "roles.<name>.overlap",
        "`true`: the new release's containers start beside the old ones; `false` (a bot, a scheduler): never two at once, one replica",
        default=True,
    ),
    Key(
        "roles.<name>.env",
        "the role's own environment variables (it also gets `secretEnv` and the accessories' URLs, so none of those names, nor `APP_VERSION`)",
        default={},
    ),
    Key("roles.<name>.memory", "memory limit, at least `6m`", default="256m"),
    Key("roles.<name>.cpus", "CPU limit", default=1),
    Key(
        "roles.<name>.stopTimeout",
        "how long an old container has after SIGTERM to finish the job in hand; whole seconds, at least `1s`",
        default="10m",
    ),
    Key(
        "roles.<name>.waitTimeout",
        "how long a new container may take to become healthy; whole seconds, at least its `healthcheck.startPeriod` + `healthcheck.interval`",
        default="2m",
    ),
    Key("healthcheck.path", "path probed inside the container and through the proxy", default="/health"),
    Key("healthcheck.port", "port probed inside the container", shown="`web.port`"),
    Key("healthcheck.interval", "above zero: Docker reads `0` as the image's `HEALTHCHECK` value or its own 30s", default="2s"),
    Key(
        "healthcheck.timeout",
        "above zero (`0`: 30s); it may exceed the interval: Docker runs one probe at a time, the next an interval after the last ends",
        default="3s",
    ),
    Key("healthcheck.retries", "", default=3),
    Key(
        "healthcheck.startPeriod",
        "above zero: Docker reads `0` as the image's start period, not none (`1ms` is next to none)",
        default="10s",
    ),
    Key(
        "healthcheck.command",
        'a probe command run in the container, as a list of strings (exec form, no shell): for an image with no shell, e.g. `["/app", "-healthcheck"]`',
        shown='the shell probe of "Bring your own app"',
    ),
    Key(
        "proxy.image",
        "the edge proxy image (Caddy 2.8 or newer); like every image key, a reference the engine can pull (lowercase name, optional tag and digest)",
        default="caddy:2",
    ),
    Key(
        "proxy.keeperImage",
        "an image with the Docker CLI (`sh` and `docker`): the keeper that starts the proxy again after an engine restart raced it",
        default="docker:28-cli",
    ),
    Key("proxy.httpPort", "host port for HTTP (dev: `8080`)", default=80),
    Key("proxy.httpsPort", "host port for HTTPS, `null` for none", default=443),
    Key("proxy.domain", "serve this name over HTTPS with automatic certificates", shown=NONE),
    Key("proxy.email", "ACME account email", shown=NONE),
    Key("proxy.acmeCA", "ACME directory URL, e.g. a staging or private CA (needs `proxy.domain`)", shown="Let's Encrypt, then ZeroSSL"),
    Key("proxy.acmeCARoot", "PEM of the CA that signs that directory's own HTTPS certificate (a private ACME server)", shown=NONE),
    Key("proxy.drain", "time old routes get after the switch (whole seconds)", default="2s"),
    Key(
        "proxy.upstreamTimeout",
        "above zero (Caddy reads `0` as 5s): the proxy asks each upstream for `healthcheck.path` every 500 ms; two answers slower than this (or none) in a row take it out of rotation until one comes in time",
        default="1s",
    ),
    Key("proxy.bindAddress", "host address the ports bind to: an IPv4 or IPv6 address", shown="all addresses"),
    Key("postgres.enabled", "a PostgreSQL accessory; password in `postgresPassword`; every role gets `DATABASE_URL`", default=False),
    Key("postgres.image", "", default="postgres:16"),
    Key("postgres.database", "", default="app"),
    Key("postgres.user", "", default="app"),
    Key(
        "postgres.backupsKept",
        "a dump is taken before each migration and the last N kept on the server (`0`: none); see [Backups](#backups)",
        default=10,
    ),
    Key("redis.enabled", "a Redis accessory; password in `redisPassword`; every role gets `REDIS_URL`", default=False),
    Key("redis.image", "", default="redis:7"),
    Key("migrations.command", 'e.g. `["alembic", "upgrade", "head"]`, run once per new image before any container of any role', shown=NONE),
    Key("releases.historySize", "earlier releases kept in the `releases` output", default=10),
    Key("releases.promoteFrom", "deploy what that stack runs", shown=NONE),
    Key(
        "releases.probation",
        "how long a live release is watched before the old one is removed (`0s`: not at all; whole seconds); see [Probation](#probation)",
        default="30s",
    ),
    Key(
        "releases.imagesKept",
        "the app images kept on the server: this release's and the releases before it; older ones are removed after each release (a rollback further back pulls again)",
        default=5,
    ),
    Key(
        "releases.probationErrorRate",
        "during probation, more than this percentage of 5xx answers over 10 s (at least 10 answers) takes the release back",
        default=10,
    ),
    Key(
        "releases.canary",
        "before the full switch, one web slot (1 of `web.replicas`) alone routes to the release this long, watched as on probation with its own answers' error rate (`0s`: no canary; whole seconds); see [Canary](#canary)",
        default="0s",
    ),
    Key(
        "verify.enabled",
        "check the release through the proxy's private listener before the public switch (after it when the proxy's settings change)",
        default=True,
    ),
    Key(
        "verify.expectVersion",
        'also require `"version": "<tag>"` in the health response\'s body (the check always requires the answer to come from a new container, told by the proxy)',
        default=False,
    ),
    Key("verify.attempts", "bounded retry of that check…", default=15),
    Key("verify.interval", "…with this pause between attempts (whole seconds, at least `1s`)", default="2s"),
    Key(
        "cluster.enabled",
        "`true`: `host.url` is a Docker Swarm manager and each role of a release runs as a Swarm service over the nodes; see [More than one server](#more-than-one-server)",
        default=False,
    ),
    Key(
        "cluster.placement",
        'Swarm constraints for the app\'s tasks, like `["node.role==worker"]` or `["node.labels.app==true"]`',
        default=[],
    ),
    Key("cluster.spread", "a node label to spread each role's tasks over, like `node.labels.zone`", shown=NONE),
    Key(
        "cluster.convergeTimeout",
        "how long a release's services may take until every task runs healthy; a release that does not get there is refused after this long; at least the slowest role's start period + interval",
        default="3m",
    ),
    Key(
        "github.*",
        "see [Setting up GitHub](#setting-up-github) (the pipeline deploys `prod` alone unless `github.stacks` lists more: [Which stacks](#which-stacks-the-pipeline-deploys))",
        shown="off",
        covers=tuple(f"github.{k}" for k in GITHUB_KEYS),
    ),
    Key("sshPrivateKey", "deploy user's private key", shown="none (required for ssh)", secret=True),
    Key("registryPassword", "registry password or token (GHCR: `write:packages`)", shown=NONE, secret=True),
    Key("secretEnv", "object of secret environment variables for every role (`--path 'secretEnv.NAME'`)", shown=NONE, secret=True),
    Key("postgresPassword", "the PostgreSQL accessory's password (`postgres.enabled`)", shown=NONE, secret=True),
    Key("redisPassword", "the Redis accessory's password (`redis.enabled`)", shown=NONE, secret=True),
    Key("githubSecrets", "object of secrets for the GitHub side", shown=NONE, secret=True),
    Key(
        "notifyWebhook",
        "an https:// incoming-webhook URL the deploy workflow announces deploys to (see [Notifications](#notifications))",
        shown=NONE,
        secret=True,
    ),
)
