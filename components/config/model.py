"""The stack's configuration, as the program uses it: frozen dataclasses, no parsing.

`components.config` builds a `StackConfig` from the raw `<project>:*` values and is the
module the rest of the program imports these names from.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import pulumi

# The config namespace is the project's name (Pulumi.yaml `name:`): this is the name the project ships with,
# the default where none is given; the program passes pulumi.get_project(), `make` commands read Pulumi.yaml.
NAMESPACE = "cutover"
# The environment variable that asks one `pulumi up` for a rollback (components/release/records.py resolve_target):
# read here too, since a rollback builds nothing and its build files are not looked for.
ROLLBACK_ENV = "CUTOVER_ROLLBACK_TO"
SSH_URL = re.compile(r"^ssh://(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(:(?P<port>\d+))?$")


def known_hosts_name(host: str, port: int) -> str:
    """How a known_hosts line (and ssh-keyscan) names a host: the bare name or address on port 22, `[host]:port` on
    any other (OpenSSH misc.c put_host_port); an IPv6 literal loses the brackets of its URL form first."""
    bare = host.strip("[]")
    return bare if port == 22 else f"[{bare}]:{port}"


class Secret:
    """A configuration value that must stay secret; never shows itself in repr or str.

    Inside the program a component takes `output`, the one Pulumi secret Output of this value, made on
    first use, as pulumi.Config.get_secret makes one (pulumi/pulumi sdk/python/lib/pulumi/config.py
    Config.get_secret: `return Output.secret(v)`). `reveal` is for the config checks and for what runs
    outside a Pulumi program (components/ops/, the ssh agent); `derive` makes a value from this one
    that stays a secret both ways."""

    __slots__ = ("_derive", "_output", "_value")

    def __init__(self, value: str, _derive: tuple[Secret, Callable[[str], str]] | None = None) -> None:
        self._value = value
        self._output: pulumi.Output[str] | None = None
        self._derive = _derive

    def reveal(self) -> str:
        return self._value

    @property
    def output(self) -> pulumi.Output[str]:
        """The value as a Pulumi secret Output (one per Secret; a derived one applies to its source's)."""
        if self._output is None:
            import pulumi  # the program's, at run time; the rest of this module needs none

            if self._derive is not None:
                source, fn = self._derive
                self._output = source.output.apply(fn)
            else:
                self._output = pulumi.Output.secret(self._value)
        return self._output

    def derive(self, fn: Callable[[str], str]) -> Secret:
        """`fn(value)`, a secret too: its `output` is this one's, applied, so it is made from no revealed value."""
        return Secret(fn(self._value), (self, fn))

    def __repr__(self) -> str:
        return "Secret('[secret]')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class ConfigError(ValueError):
    """Raised with every configuration problem found, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid stack configuration ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class ImageConfig:
    repository: str
    tag: str
    context: str = "./app"
    dockerfile: str = "Dockerfile"
    platform: str | None = None  # the engine's own platform unless set
    build_args: dict[str, str] = field(default_factory=dict)
    extra_tags: tuple[str, ...] = ()
    push: bool = True
    cache_from_registry: bool = True
    registry_username: str | None = None
    registry_password: Secret | None = None
    # A digest-pinned reference to deploy instead of building (rollback, promotion, or by hand).
    ref: str | None = None
    git_sha: str = ""
    # the build cache kept on the machine that builds, in MB (0, the default: the program never prunes it)
    build_cache_mb: int = 0

    @property
    def registry(self) -> str:
        return registry_of(self.repository)

    @property
    def tagged(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class HostConfig:
    url: str = "unix:///var/run/docker.sock"
    known_hosts: str | None = None
    private_key: Secret | None = None

    @property
    def is_ssh(self) -> bool:
        return self.url.startswith("ssh://")

    @property
    def ssh(self) -> tuple[str, str, int]:
        """(user, address, port) of an ssh:// host."""
        m = SSH_URL.match(self.url)
        if not m:
            raise ValueError(f"not an ssh:// host: {self.url}")
        return m["user"], m["host"], int(m["port"] or 22)

    @property
    def host_key(self) -> str | None:
        """The pinned key alone ('ssh-ed25519 AAAA...'), from the known_hosts line."""
        if not self.known_hosts:
            return None
        parts = self.known_hosts.split()
        return " ".join(parts[1:3]) if len(parts) >= 3 else None


@dataclass(frozen=True)
class HealthcheckConfig:
    path: str = "/health"
    port: int = 8000
    interval: str = "2s"
    timeout: str = "3s"
    retries: int = 3
    start_period: str = "10s"
    command: tuple[str, ...] = ()

    def test(self) -> list[str]:
        """The Docker healthcheck test: `command` when set, else `default_probe`, which works in any image
        with a shell and one HTTP client (a static binary's image with no shell sets `command`)."""
        if self.command:
            return ["CMD", *self.command]
        return ["CMD-SHELL", default_probe(f"http://127.0.0.1:{self.port}{self.path}")]


def default_probe(url: str) -> str:
    """A shell probe of `url` with the first HTTP client the image has: busybox's or GNU wget (Alpine and
    busybox images), curl, then python3 or node (slim language images carry neither wget nor curl). Each exits
    non-zero unless the answer is a 2xx (wget, curl -f, urlopen; node checks the status). With none of them it
    says so in the container's health log (`docker inspect`), naming the key to set. Docker runs CMD-SHELL as
    `/bin/sh -c` inside the container and bounds it by the healthcheck's timeout (moby daemon/health.go
    cmdProbe.run), so no client needs a timeout flag of its own (Debian's busybox wget crashes with -T:
    tests/e2e/infra.py CADDY_STANDIN)."""
    quoted, literal = shlex.quote(url), json.dumps(url)  # a shell word; a string in Python and in JavaScript
    python = f"import urllib.request; urllib.request.urlopen({literal}, timeout=2)"
    node = (
        f'require("http").get({literal}, r => process.exit(r.statusCode >= 200 && r.statusCode < 300 ? 0 : 1))'
        '.on("error", () => process.exit(1))'
    )
    missing = shlex.quote(f"no wget, curl, python3 or node in this image to ask {url}: set healthcheck.command")
    return (
        f"if command -v wget >/dev/null 2>&1; then exec wget -q -O /dev/null {quoted}; "
        f"elif command -v curl >/dev/null 2>&1; then exec curl -fsS -o /dev/null {quoted}; "
        f"elif command -v python3 >/dev/null 2>&1; then exec python3 -c {shlex.quote(python)}; "
        f"elif command -v node >/dev/null 2>&1; then exec node -e {shlex.quote(node)}; "
        f"else echo {missing} >&2; exit 1; fi"
    )


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = True  # false: no web role, no proxy (a bot or a worker alone)
    port: int = 8000
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, Secret] = field(default_factory=dict)
    memory_mb: int = 512
    cpus: str = "1.0"  # as the docker provider reads it back (components/config/provider_forms.py)
    stop_timeout_s: int = 30
    wait_timeout_s: int = 120
    user: str = "10001:10001"
    read_only: bool = True
    tmpfs: tuple[str, ...] = ("/tmp",)
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoleHealthcheck:
    """A probe that needs no HTTP: a command run in the container (a heartbeat file's age, say)."""

    command: tuple[str, ...]
    interval: str = "5s"
    timeout: str = "3s"
    retries: int = 3
    start_period: str = "10s"

    def test(self) -> list[str]:
        return ["CMD", *self.command]


@dataclass(frozen=True)
class RoleConfig:
    """A role beside web: the same image and release, its own command, replicas and resources."""

    name: str
    command: tuple[str, ...]
    healthcheck: RoleHealthcheck
    replicas: int = 1
    # true (rolling): the new containers start beside the old ones; false (single instance, a bot or
    # a scheduler): never two at once, the old one stops before the new one starts
    overlap: bool = True
    env: dict[str, str] = field(default_factory=dict)
    memory_mb: int = 256
    cpus: str = "1.0"
    # a job in hand should finish, not die: the old containers get this long after SIGTERM
    stop_timeout_s: int = 600
    wait_timeout_s: int = 120


@dataclass(frozen=True)
class ProxyConfig:
    image: str = "caddy:2"
    # a Docker CLI image: the keeper that starts the proxy again when the engine's restart raced it (components/edge/proxy.py)
    keeper_image: str = "docker:28-cli"
    http_port: int = 80
    https_port: int | None = 443
    domain: str | None = None
    email: str | None = None
    drain_s: int = 2
    # how long the proxy's own probe of each upstream slot may take before it counts as failed (Caddyfile health_timeout)
    upstream_timeout_ms: int = 1000
    bind_address: str | None = None  # host address the ports bind to (all addresses when unset)
    acme_ca: str | None = None  # the ACME directory certificates come from (Caddy's default: Let's Encrypt, then ZeroSSL)
    acme_ca_root: str | None = None  # PEM of the CA that signs that directory's own HTTPS certificate (a private ACME server)


@dataclass(frozen=True)
class PostgresConfig:
    enabled: bool = False
    image: str = "postgres:16"
    database: str = "app"
    user: str = "app"
    password: Secret | None = None
    # dumps taken before each migration, kept on the host (0: none)
    backups_kept: int = 10


@dataclass(frozen=True)
class RedisConfig:
    enabled: bool = False
    image: str = "redis:7"
    password: Secret | None = None


@dataclass(frozen=True)
class MigrationsConfig:
    command: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.command)


@dataclass(frozen=True)
class ReleasesConfig:
    history_size: int = 10
    promote_from: str | None = None
    # After going live, the release is watched this long before the old one is removed (0: not at all).
    probation_s: int = 30
    # During probation, more than this share of 5xx answers (in percent) in a 10 s window fails it.
    probation_error_rate: int = 10
    # Before the full switch, one web slot alone routes to the release this long, on probation of its own (0: no canary).
    canary_s: int = 0
    # the app images kept on the host: the current release's and those of the releases before it
    images_kept: int = 5


@dataclass(frozen=True)
class VerifyConfig:
    enabled: bool = True
    expect_version: bool = False
    attempts: int = 15
    interval_s: int = 2


@dataclass(frozen=True)
class ClusterConfig:
    """The host is a Docker Swarm manager: each role of a release runs as a Swarm service over the nodes.

    The proxy and the accessories stay containers on the manager (the host cutover connects to), on
    attachable overlay networks that the services' tasks on every node join."""

    enabled: bool = False
    # Swarm placement constraints for the app's tasks, like 'node.role==worker' or 'node.labels.app==true'
    placement: tuple[str, ...] = ()
    # a node label to spread each role's tasks over (Swarm's spread preference), like 'node.labels.zone'
    spread: str | None = None
    # how long a new release's service may take until every task runs and is healthy
    converge_timeout_s: int = 180


@dataclass(frozen=True)
class GitHubConfig:
    # Names the GitHub pipeline sets itself: config may not redefine them.
    RESERVED_VARIABLES: ClassVar[tuple[str, ...]] = ("PULUMI_STACK", "DEPLOY_HOST", "IMAGE_REPOSITORY", "PUBLIC_URL", "SSH_KNOWN_HOSTS")
    # secret name -> the config key it is set from
    RESERVED_SECRETS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"SSH_PRIVATE_KEY": "sshPrivateKey", "NOTIFY_WEBHOOK": "notifyWebhook"}
    )

    enabled: bool = False
    owner: str | None = None
    repository: str | None = None
    environment: str | None = None
    manage_repository_files: bool = False
    branch: str = "main"
    reviewers: tuple[str, ...] = ()
    wait_timer_minutes: int = 0
    protect_branch: bool = False
    public_url: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Secret] = field(default_factory=dict)
    # Stack -> GitHub deployment environment, in deploy order (the workflows deploy them one after another).
    # Only stacks on a server: `dev` runs on the machine's own engine and is deployed from there (make deploy).
    stacks: dict[str, str] = field(default_factory=lambda: {"prod": "production"})
    # Repository admins may bypass the branch ruleset: only when asked for.
    admin_bypass: bool = False
    # The branch the owning stack commits the workflow files to; a pull request takes them into `branch`.
    files_branch: str = "cutover/pipeline"


@dataclass(frozen=True)
class StackIdentity:
    """Which app and stack a thing on the host belongs to: what its labels say and what its name starts with.
    Two stacks on one host never collide."""

    app_name: str
    stack: str

    @property
    def resource_prefix(self) -> str:
        return f"{self.app_name}-{self.stack}"


@dataclass(frozen=True)
class StackConfig:
    stack: str
    app_name: str
    image: ImageConfig
    host: HostConfig
    healthcheck: HealthcheckConfig
    web: WebConfig
    proxy: ProxyConfig
    postgres: PostgresConfig = PostgresConfig()
    redis: RedisConfig = RedisConfig()
    migrations: MigrationsConfig = MigrationsConfig()
    releases: ReleasesConfig = ReleasesConfig()
    verify: VerifyConfig = VerifyConfig()
    github: GitHubConfig = GitHubConfig()
    roles: tuple[RoleConfig, ...] = ()
    cluster: ClusterConfig = ClusterConfig()
    # where deploys are announced (Slack-compatible JSON); a secret, given to the workflows only
    notify_webhook: Secret | None = None

    @property
    def identity(self) -> StackIdentity:
        return StackIdentity(self.app_name, self.stack)

    @property
    def resource_prefix(self) -> str:
        """Prefix of names on the host: two stacks on one host never collide."""
        return self.identity.resource_prefix

    @property
    def public_url(self) -> str:
        if self.github.public_url:
            return self.github.public_url
        if self.proxy.domain:
            return f"https://{self.proxy.domain}"
        port = "" if self.proxy.http_port == 80 else f":{self.proxy.http_port}"
        return f"http://localhost{port}"


def registry_of(repository: str) -> str:
    """The registry host of a repository ('docker.io' when none is named)."""
    first = repository.split("/", 1)[0]
    if "/" in repository and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"
