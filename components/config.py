"""The stack's configuration: one typed, validated model.

`parse_config` is pure: it takes the raw `cutover:*` values (as Pulumi stores
them: strings, or JSON for objects) and the set of keys that are secrets, and
returns a `StackConfig` or raises `ConfigError` listing every problem at once.
`load_config` is the thin Pulumi-facing wrapper used by `__main__.py`.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from components.provider_forms import provider_cpus

NAMESPACE = "cutover"

T = TypeVar("T")


class Secret:
    """A configuration value that must stay secret; never shows itself in repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

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


# --------------------------------------------------------------------------- the model


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
        """The Docker healthcheck test; by default a stdlib Python probe (slim images have no curl)."""
        if self.command:
            return ["CMD", *self.command]
        probe = (
            "import sys,urllib.request;"
            f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{self.port}{self.path}',"
            " timeout=2).status==200 else 1)"
        )
        return ["CMD", "python", "-c", probe]


@dataclass(frozen=True)
class WebConfig:
    port: int = 8000
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, Secret] = field(default_factory=dict)
    memory_mb: int = 512
    cpus: str = "1.0"  # as the docker provider reads it back (components/provider_forms.py)
    stop_timeout_s: int = 30
    wait_timeout_s: int = 120
    user: str = "10001:10001"
    read_only: bool = True
    tmpfs: tuple[str, ...] = ("/tmp",)
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProxyConfig:
    image: str = "caddy:2"
    http_port: int = 80
    https_port: int | None = 443
    domain: str | None = None
    email: str | None = None
    drain_s: int = 2
    bind_address: str | None = None  # host address the ports bind to (all addresses when unset)


@dataclass(frozen=True)
class PostgresConfig:
    enabled: bool = False
    image: str = "postgres:16"
    database: str = "app"
    user: str = "app"
    password: Secret | None = None


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


@dataclass(frozen=True)
class VerifyConfig:
    enabled: bool = True
    expect_version: bool = True
    attempts: int = 15
    interval_s: int = 2


@dataclass(frozen=True)
class GitHubConfig:
    # Names the GitHub pipeline sets itself: config may not redefine them.
    RESERVED_VARIABLES: ClassVar[tuple[str, ...]] = ("PULUMI_STACK", "DEPLOY_HOST", "IMAGE_REPOSITORY", "PUBLIC_URL", "SSH_KNOWN_HOSTS")
    RESERVED_SECRETS: ClassVar[tuple[str, ...]] = ("SSH_PRIVATE_KEY",)

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
    stacks: dict[str, str] = field(default_factory=lambda: {"dev": "dev", "prod": "production"})


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

    @property
    def resource_prefix(self) -> str:
        """Prefix of names on the host: two stacks on one host never collide."""
        return f"{self.app_name}-{self.stack}"

    @property
    def public_url(self) -> str:
        if self.github.public_url:
            return self.github.public_url
        if self.proxy.domain:
            return f"https://{self.proxy.domain}"
        port = "" if self.proxy.http_port == 80 else f":{self.proxy.http_port}"
        return f"http://localhost{port}"


# --------------------------------------------------------------------------- value checks

DURATION = re.compile(r"^(\d+(ms|s|m|h))+$")
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
SSH_URL = re.compile(r"^ssh://(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(:(?P<port>\d+))?$")
# Docker reference grammar (distribution/reference), lowercase path components only.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::\d+)?)"
REPOSITORY = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_REF = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?@sha256:[0-9a-f]{{64}}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MEMORY = re.compile(r"^(\d+)([mMgG])$")
# ed25519 or ECDSA only: pulumi-command offers the server exactly the pinned key's type
# (pulumi-command v1.2.1 provider/pkg/provider/remote/connection.go: HostKeyAlgorithms =
# [publicKey.Type()]), and for an RSA key that is SHA-1 `ssh-rsa`, which OpenSSH 8.8+ refuses.
KNOWN_HOSTS_LINE = re.compile(r"^\S+ (ssh-ed25519|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\n]*)?$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
SECRET_MARK = "must be stored as a secret (pulumi config set --secret ...)"  # noqa: S105 - a message, not a password


def registry_of(repository: str) -> str:
    """The registry host of a repository ('docker.io' when none is named)."""
    first = repository.split("/", 1)[0]
    if "/" in repository and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def duration_seconds(value: str) -> float:
    """'1m30s' -> 90.0; expects a value already matching DURATION."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", value))


class _Reader:
    """Reads keys from the raw config, recording every problem instead of stopping at the first."""

    def __init__(self, raw: Mapping[str, Any], secret_keys: set[str]) -> None:
        self.raw = raw
        self.secret_keys = secret_keys
        self.problems: list[str] = []

    def fail(self, key: str, value: Any, expected: str) -> None:
        shown = "[secret]" if key.split(".")[0] in self.secret_keys else json.dumps(value)
        self.problems.append(f"{NAMESPACE}:{key} = {shown}: expected {expected}")

    def missing(self, key: str, expected: str) -> None:
        self.problems.append(f"{NAMESPACE}:{key} is missing: expected {expected}")

    def object(self, key: str) -> dict[str, Any]:
        value = self.raw.get(key)
        if value is None:
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                self.fail(key, value, "an object (set keys with `pulumi config set --path`)")
                return {}
        if not isinstance(value, dict):
            self.fail(key, value, "an object (set keys with `pulumi config set --path`)")
            return {}
        return value

    def value(self, obj: Mapping[str, Any], key: str, sub: str, default: T, check: Callable[[Any], T | None], expected: str) -> T:
        name = f"{key}.{sub}" if key else sub
        if sub not in obj or obj[sub] is None:
            return default
        parsed = check(obj[sub])
        if parsed is None:
            self.fail(name, obj[sub], expected)
            return default
        return parsed

    def unknown(self, key: str, obj: Mapping[str, Any], known: set[str] | frozenset[str]) -> None:
        for sub in obj:
            if sub not in known:
                hint = difflib.get_close_matches(sub, known, n=1)
                also = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.fail(f"{key}.{sub}" if key else sub, obj[sub], f"one of the known keys {sorted(known)}{also}")

    def secret(self, key: str, required_why: str | None = None) -> Secret | None:
        value = self.raw.get(key)
        if value in (None, ""):
            if required_why:
                self.missing(key, f"a secret, because {required_why}")
            return None
        if key not in self.secret_keys:
            self.problems.append(f"{NAMESPACE}:{key} is set in plain text: it {SECRET_MARK}")
            return None
        return Secret(str(value))


def _int(lo: int, hi: int) -> Callable[[Any], int | None]:
    def check(v: Any) -> int | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
            v = int(v)
        return v if isinstance(v, int) and lo <= v <= hi else None

    return check


def _bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def _str(pattern: re.Pattern[str] | None = None) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or not v:
            return None
        return v if pattern is None or pattern.match(v) else None

    return check


def _duration(v: Any) -> str | None:
    return v if isinstance(v, str) and DURATION.match(v) else None


def _str_list(v: Any) -> tuple[str, ...] | None:
    if isinstance(v, str):
        return (v,) if v else None
    if isinstance(v, list) and v and all(isinstance(x, str) and x for x in v):
        return tuple(v)
    return None


def _names(v: Any) -> tuple[str, ...] | None:
    """A list of names that may be empty."""
    return () if v == [] else _str_list(v)


def _str_map(v: Any) -> dict[str, str] | None:
    if not (isinstance(v, dict) and all(isinstance(k, str) and ENV_NAME.match(k) for k in v)):
        return None
    # one line each: values travel in env files and container environments
    if not all(isinstance(x, (str, int, float, bool)) and "\n" not in str(x) for x in v.values()):
        return None
    return {k: (str(x).lower() if isinstance(x, bool) else str(x)) for k, x in v.items()}


def _cpus(v: Any) -> str | None:
    """The CPU limit in the form the docker provider reads back ('1' -> '1.0'); None when no form survives it."""
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        return None
    return provider_cpus(str(v))


CPUS_EXPECTED = (
    "a positive number of CPUs like 0.5, 1 or 2, one the docker provider reads back unchanged"
    " (it reads 0.01 back as 0.0 and 100.25 as 100.3: use 0.1, 0.25, 0.5, 1.5 ...)"
)
PORT = _int(1, 65535)
PORT_EXPECTED = "a port number from 1 to 65535"
DURATION_EXPECTED = "a duration with a unit, like '500ms', '10s', '1m' or '1m30s'"

# The keys of each object, in one place: the parser refuses others (naming the closest),
# and a test checks that README's table documents every one.
SECTION_KEYS: dict[str, frozenset[str]] = {
    "image": frozenset({"repository", "tag", "context", "dockerfile", "platform", "buildArgs", "extraTags", "push", "cacheFromRegistry", "registryUsername", "ref"}),
    "host": frozenset({"url", "knownHosts"}),
    "web": frozenset({"port", "replicas", "env", "memory", "cpus", "stopTimeout", "waitTimeout", "user", "readOnly", "tmpfs", "command"}),
    "healthcheck": frozenset({"path", "port", "interval", "timeout", "retries", "startPeriod", "command"}),
    "proxy": frozenset({"image", "httpPort", "httpsPort", "domain", "email", "drain", "bindAddress"}),
    "postgres": frozenset({"enabled", "image", "database", "user"}),
    "redis": frozenset({"enabled", "image"}),
    "migrations": frozenset({"command"}),
    "releases": frozenset({"historySize", "promoteFrom", "probation", "probationErrorRate"}),
    "verify": frozenset({"enabled", "expectVersion", "attempts", "interval"}),
    "github": frozenset({"enabled", "owner", "repository", "environment", "manageRepositoryFiles", "branch", "reviewers", "waitTimer", "protectBranch", "publicUrl", "variables", "stacks"}),
}  # fmt: skip
# Secrets live in keys of their own, so that marking one secret never hides the rest.
SECRET_KEYS = frozenset({"sshPrivateKey", "registryPassword", "secretEnv", "postgresPassword", "redisPassword", "githubSecrets"})
KNOWN_KEYS = {"appName", *SECTION_KEYS, *SECRET_KEYS}


def parse_config(
    raw: Mapping[str, Any],
    secret_keys: set[str],
    stack: str,
    git_sha: str | None = None,
    uncommitted: Callable[[str], bool] | None = None,
) -> StackConfig:
    """Validate the raw `cutover:*` config (keys without the namespace) into a StackConfig.

    `git_sha` is the commit checked out; `uncommitted(context)` tells whether the build
    context differs from it (given only when the tag comes from the checkout itself).
    Raises ConfigError naming every bad key, the value given and what is expected.
    """
    r = _Reader(raw, secret_keys)
    r.unknown("", raw, KNOWN_KEYS)

    app_name = raw.get("appName")
    if app_name in (None, ""):
        r.missing("appName", "a lowercase name like 'web' (letters, digits, '-'; at most 40)")
        app_name = "app"
    elif not (isinstance(app_name, str) and NAME.match(app_name)):
        r.fail("appName", app_name, "a lowercase name like 'web' (letters, digits, '-'; at most 40)")
        app_name = "app"

    image = _parse_image(r, git_sha, uncommitted)
    host = _parse_host(r)
    web = _parse_web(r)
    healthcheck = _parse_healthcheck(r, web.port)
    proxy = _parse_proxy(r)
    postgres, redis = _parse_accessories(r)
    migrations = MigrationsConfig(
        command=r.value(
            m := r.object("migrations"),
            "migrations",
            "command",
            (),
            _str_list,
            "a command as a list of strings, like ['alembic', 'upgrade', 'head']",
        )
    )
    r.unknown("migrations", m, SECTION_KEYS["migrations"])
    releases = _parse_releases(r)
    verify = _parse_verify(r)
    github = _parse_github(r, stack)

    if r.problems:
        raise ConfigError(r.problems)
    return StackConfig(
        stack=stack, app_name=str(app_name), image=image, host=host, healthcheck=healthcheck, web=web,
        proxy=proxy, postgres=postgres, redis=redis, migrations=migrations, releases=releases,
        verify=verify, github=github,
    )  # fmt: skip


def _parse_image(r: _Reader, git_sha: str | None, uncommitted: Callable[[str], bool] | None) -> ImageConfig:
    o = r.object("image")
    r.unknown("image", o, SECTION_KEYS["image"])
    repo_expected = "an image repository in lowercase without spaces or tag, like 'ghcr.io/acme/web'"
    if not o.get("repository"):
        r.missing("image.repository", repo_expected)
    repository = r.value(o, "image", "repository", "invalid/invalid", _str(REPOSITORY), repo_expected)
    tag = r.value(o, "image", "tag", git_sha or "", _str(TAG), "a tag of letters, digits, '.', '_' or '-' (the git SHA by default)")
    if tag == "latest":
        r.fail(
            "image.tag", tag, "an immutable tag such as the git SHA: 'latest' moves, so a release could never be told apart or rolled back"
        )
    elif not tag and "tag" not in o and not o.get("ref"):
        r.missing("image.tag", "a tag: no git SHA was found (set GITHUB_SHA, run inside a git checkout, or set image.tag)")
    extra: tuple[str, ...] = r.value(o, "image", "extraTags", (), _names, "a list of tags")
    for t in extra:
        if not TAG.match(t):
            r.fail("image.extraTags", list(extra), "tags of letters, digits, '.', '_' or '-'")
            break
    push = r.value(o, "image", "push", True, _bool, "true or false")
    context = r.value(o, "image", "context", "./app", _str(), "a path to the build context")
    if push and "tag" not in o and not o.get("ref") and uncommitted is not None and git_sha and uncommitted(context):
        r.fail(
            "image.push",
            push,
            f"a build of commit {git_sha[:12]} as it is: the build context {context} has uncommitted changes, and the"
            f" pushed tag {git_sha} would name an image that is not that commit (a tag is pushed once);"
            " commit them, or set image.tag for this build",
        )
    password = r.secret(
        "registryPassword", "image.push is true for a registry that needs a login" if push and o.get("registryUsername") else None
    )
    username = r.value(o, "image", "registryUsername", None, _str(), "a registry user name")
    if password and not username:
        r.missing("image.registryUsername", "the user name that goes with registryPassword")
    return ImageConfig(
        repository=repository, tag=tag or "unknown",
        context=context,
        dockerfile=r.value(o, "image", "dockerfile", "Dockerfile", _str(), "a Dockerfile path relative to the context"),
        platform=r.value(o, "image", "platform", None, _str(re.compile(r"^[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?$")), "a platform like 'linux/amd64' or 'linux/arm64'"),
        build_args=r.value(o, "image", "buildArgs", {}, _str_map, "an object of NAME: value build arguments"),
        extra_tags=extra, push=push,
        cache_from_registry=r.value(o, "image", "cacheFromRegistry", True, _bool, "true or false"),
        registry_username=username, registry_password=password,
        ref=r.value(o, "image", "ref", None, _str(DIGEST_REF), "a digest-pinned reference like 'ghcr.io/acme/web@sha256:<64 hex>'"),
        git_sha=git_sha or "",
    )  # fmt: skip


def _parse_host(r: _Reader) -> HostConfig:
    o = r.object("host")
    r.unknown("host", o, SECTION_KEYS["host"])
    url = r.value(
        o,
        "host",
        "url",
        "unix:///var/run/docker.sock",
        _str(re.compile(r"^(unix:///\S+|ssh://\S+)$")),
        "'unix:///var/run/docker.sock' or 'ssh://user@host:port'",
    )
    ssh = url.startswith("ssh://")
    if ssh and not SSH_URL.match(url):
        r.fail("host.url", url, "'ssh://user@host' or 'ssh://user@host:port' with a port from 1 to 65535")
    elif ssh and not 1 <= int(SSH_URL.match(url)["port"] or 22) <= 65535:  # type: ignore[index]
        r.fail("host.url", url, "'ssh://user@host:port' with a port from 1 to 65535")
    known = r.value(
        o,
        "host",
        "knownHosts",
        None,
        _str(KNOWN_HOSTS_LINE),
        "one known_hosts line for the server with its ed25519 or ECDSA key, like '203.0.113.7 ssh-ed25519 AAAA...'"
        " (ssh-keyscan -t ed25519 -p PORT HOST prints it; an ssh-rsa key cannot be pinned: the SSH client of"
        " pulumi-command would then offer only SHA-1 ssh-rsa, which OpenSSH 8.8 and later refuse)",
    )
    if ssh and known and (m := SSH_URL.match(url)):
        port = int(m["port"] or 22)
        expected = m["host"] if port == 22 else f"[{m['host'].strip('[]')}]:{port}"
        names = known.split()[0]
        if not names.startswith("|1|") and expected not in names.split(","):
            r.fail("host.knownHosts", known, f"a line for {expected} (the host and port of host.url), as ssh looks it up")
    if ssh and not o.get("knownHosts"):
        r.missing(
            "host.knownHosts",
            "the server's pinned host key for an ssh:// host (ssh-keyscan -t ed25519 -p PORT HOST), so the server cannot be impersonated",
        )
    key = r.secret("sshPrivateKey", "host.url is an ssh:// host" if ssh else None)
    if key is not None and (problem := private_key_problem(key.reveal())):
        r.problems.append(f"{NAMESPACE}:sshPrivateKey = [secret]: expected {problem}")
        key = None
    return HostConfig(url=url, known_hosts=known, private_key=key)


def private_key_problem(text: str) -> str | None:
    """None for an unencrypted private key ssh-add can load from stdin; otherwise what is expected."""
    expected = "an unencrypted private key (ssh-keygen -t ed25519 -N '' -f deploy_key; set it with `--secret sshPrivateKey < deploy_key`)"
    m = re.search(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----\n(.*?)\n-----END \1PRIVATE KEY-----", text.replace("\r\n", "\n"), re.S)
    if not m:
        return expected
    body = m[2]
    if "ENCRYPTED" in m[1] or "Proc-Type: 4,ENCRYPTED" in body:
        return expected + ": this one is encrypted with a passphrase"
    if m[1] == "OPENSSH ":
        try:
            blob = base64.b64decode("".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            return expected
        magic = b"openssh-key-v1\0"
        if not blob.startswith(magic) or len(blob) < len(magic) + 4:
            return expected
        size = int.from_bytes(blob[len(magic) : len(magic) + 4], "big")
        cipher = blob[len(magic) + 4 : len(magic) + 4 + size]
        if cipher != b"none":
            return expected + ": this one is encrypted with a passphrase"
    return None


def _parse_web(r: _Reader) -> WebConfig:
    o = r.object("web")
    r.unknown("web", o, SECTION_KEYS["web"])
    memory = r.value(o, "web", "memory", "512m", _str(MEMORY), "a memory limit like '256m' or '1g'")
    m = MEMORY.match(memory)
    memory_mb = int(m[1]) * (1024 if m[2].lower() == "g" else 1) if m else 512
    stop = r.value(o, "web", "stopTimeout", "30s", _duration, DURATION_EXPECTED)
    wait = r.value(o, "web", "waitTimeout", "2m", _duration, DURATION_EXPECTED)
    secret_env: dict[str, Secret] = {}
    if (s := r.secret("secretEnv")) is not None:
        try:
            env_obj = json.loads(s.reveal())
        except json.JSONDecodeError:
            env_obj = None
        if not isinstance(env_obj, dict) or not all(isinstance(k, str) and ENV_NAME.match(k) for k in env_obj):
            r.problems.append(
                f"{NAMESPACE}:secretEnv = [secret]: expected an object of NAME: value (pulumi config set --secret --path 'secretEnv.NAME' VALUE)"
            )
        elif any("\n" in str(v) for v in env_obj.values()):
            bad = sorted(k for k, v in env_obj.items() if "\n" in str(v))
            r.problems.append(f"{NAMESPACE}:secretEnv = [secret]: expected values of one line; {', '.join(bad)} span several")
        else:
            secret_env = {k: Secret(str(v)) for k, v in env_obj.items()}
    env: dict[str, str] = r.value(o, "web", "env", {}, _str_map, "an object of NAME: value environment variables, one line each")
    for k in set(env) & set(secret_env):
        r.fail(f"web.env.{k}", env[k], f"{k} only once: it is also in secretEnv")
    return WebConfig(
        port=r.value(o, "web", "port", 8000, PORT, PORT_EXPECTED),
        replicas=r.value(o, "web", "replicas", 1, _int(1, 20), "a whole number of containers from 1 to 20"),
        env=env, secret_env=secret_env, memory_mb=memory_mb,
        cpus=r.value(o, "web", "cpus", "1.0", _cpus, CPUS_EXPECTED),
        stop_timeout_s=max(1, int(duration_seconds(stop))), wait_timeout_s=max(1, int(duration_seconds(wait))),
        user=r.value(o, "web", "user", "10001:10001", _str(re.compile(r"^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$")), "a user like '10001' or '10001:10001'"),
        read_only=r.value(o, "web", "readOnly", True, _bool, "true or false"),
        tmpfs=r.value(o, "web", "tmpfs", ("/tmp",), lambda v: t if (t := _names(v)) is not None and all(p.startswith("/") for p in t) else None, "a list of absolute paths"),
        command=r.value(o, "web", "command", (), _str_list, "a command as a list of strings"),
    )  # fmt: skip


def _parse_healthcheck(r: _Reader, web_port: int) -> HealthcheckConfig:
    o = r.object("healthcheck")
    r.unknown("healthcheck", o, SECTION_KEYS["healthcheck"])
    return HealthcheckConfig(
        path=r.value(o, "healthcheck", "path", "/health", _str(re.compile(r"^/[\x21-\x7e]*$")), "an absolute URL path like '/health'"),
        port=r.value(o, "healthcheck", "port", web_port, PORT, PORT_EXPECTED),
        interval=r.value(o, "healthcheck", "interval", "2s", _duration, DURATION_EXPECTED),
        timeout=r.value(o, "healthcheck", "timeout", "3s", _duration, DURATION_EXPECTED),
        retries=r.value(o, "healthcheck", "retries", 3, _int(1, 100), "a whole number from 1 to 100"),
        start_period=r.value(o, "healthcheck", "startPeriod", "10s", _duration, DURATION_EXPECTED),
        command=r.value(o, "healthcheck", "command", (), _str_list, "a probe command as a list of strings"),
    )  # fmt: skip


def caddy_too_old(image: str) -> bool:
    """True for a Caddy image pinned to a release before 2.8, like 'caddy:2.7.6-alpine' (other images pass)."""
    m = re.search(r"(?:^|/)caddy:(\d+)\.(\d+)(?:[.-]|$)", image)
    return m is not None and (int(m[1]), int(m[2])) < (2, 8)


def _parse_proxy(r: _Reader) -> ProxyConfig:
    o = r.object("proxy")
    r.unknown("proxy", o, SECTION_KEYS["proxy"])
    http = r.value(o, "proxy", "httpPort", 80, PORT, PORT_EXPECTED)
    https: int | None = 443
    if "httpsPort" in o and o["httpsPort"] in (None, False, "", 0, "0"):
        https = None
    else:
        https = r.value(o, "proxy", "httpsPort", 443, PORT, PORT_EXPECTED + " (or null for no HTTPS port)")
    if https == http:
        r.fail("proxy.httpsPort", https, "a port other than proxy.httpPort")
    domain = r.value(o, "proxy", "domain", None, _str(HOSTNAME), "a lowercase DNS name like 'app.example.com'")
    if domain and https is None:
        r.fail("proxy.httpsPort", None, "a port: a domain is served over HTTPS")
    drain = r.value(o, "proxy", "drain", "2s", _duration, DURATION_EXPECTED)
    image = r.value(o, "proxy", "image", "caddy:2", _str(re.compile(r"^\S+$")), "an image reference like 'caddy:2'")
    if caddy_too_old(image):
        r.fail("proxy.image", image, "Caddy 2.8 or newer (the switch relies on its {file.*} placeholders), like 'caddy:2'")
    return ProxyConfig(
        image=image,
        http_port=http, https_port=https, domain=domain,
        email=r.value(o, "proxy", "email", None, _str(re.compile(r"^[^@\s]+@[^@\s]+$")), "an email address for the ACME account"),
        drain_s=int(duration_seconds(drain)),
        bind_address=r.value(o, "proxy", "bindAddress", None, _str(re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]+)$")), "an IP address like '127.0.0.1'"),
    )  # fmt: skip


def _parse_accessories(r: _Reader) -> tuple[PostgresConfig, RedisConfig]:
    p = r.object("postgres")
    r.unknown("postgres", p, SECTION_KEYS["postgres"])
    p_on = r.value(p, "postgres", "enabled", False, _bool, "true or false")
    postgres = PostgresConfig(
        enabled=p_on,
        image=r.value(p, "postgres", "image", "postgres:16", _str(re.compile(r"^\S+$")), "an image reference like 'postgres:16'"),
        database=r.value(p, "postgres", "database", "app", _str(re.compile(r"^[a-z_][a-z0-9_]*$")), "a database name of lowercase letters, digits and '_'"),
        user=r.value(p, "postgres", "user", "app", _str(re.compile(r"^[a-z_][a-z0-9_]*$")), "a user name of lowercase letters, digits and '_'"),
        password=r.secret("postgresPassword", "postgres.enabled is true" if p_on else None),
    )  # fmt: skip
    d = r.object("redis")
    r.unknown("redis", d, SECTION_KEYS["redis"])
    d_on = r.value(d, "redis", "enabled", False, _bool, "true or false")
    redis = RedisConfig(
        enabled=d_on,
        image=r.value(d, "redis", "image", "redis:7", _str(re.compile(r"^\S+$")), "an image reference like 'redis:7'"),
        password=r.secret("redisPassword", "redis.enabled is true" if d_on else None),
    )  # fmt: skip
    return postgres, redis


def _parse_releases(r: _Reader) -> ReleasesConfig:
    o = r.object("releases")
    r.unknown("releases", o, SECTION_KEYS["releases"])
    return ReleasesConfig(
        history_size=r.value(o, "releases", "historySize", 10, _int(1, 100), "a whole number from 1 to 100"),
        promote_from=r.value(o, "releases", "promoteFrom", None, _str(re.compile(r"^[\w.-]+(/[\w.-]+){0,2}$")), "a stack name like 'dev' or 'org/cutover/dev'"),
        probation_s=int(duration_seconds(r.value(o, "releases", "probation", "30s", _duration, DURATION_EXPECTED + " (0s: no probation)"))),
        probation_error_rate=r.value(o, "releases", "probationErrorRate", 10, _int(1, 100), "a whole percentage from 1 to 100"),
    )  # fmt: skip


def _parse_verify(r: _Reader) -> VerifyConfig:
    o = r.object("verify")
    r.unknown("verify", o, SECTION_KEYS["verify"])
    interval = r.value(o, "verify", "interval", "2s", _duration, DURATION_EXPECTED)
    return VerifyConfig(
        enabled=r.value(o, "verify", "enabled", True, _bool, "true or false"),
        expect_version=r.value(o, "verify", "expectVersion", True, _bool, "true or false"),
        attempts=r.value(o, "verify", "attempts", 15, _int(1, 600), "a whole number from 1 to 600"),
        interval_s=max(1, int(duration_seconds(interval))),
    )  # fmt: skip


def _parse_github(r: _Reader, stack: str) -> GitHubConfig:
    o = r.object("github")
    r.unknown("github", o, SECTION_KEYS["github"])
    enabled = r.value(o, "github", "enabled", False, _bool, "true or false")
    name = _str(re.compile(r"^[A-Za-z0-9_.-]+$"))
    # GitHub's rules: secret and variable names of letters, digits and '_', not starting with a digit or GITHUB_.
    gh_name = re.compile(r"^(?!GITHUB_)[A-Z_][A-Z0-9_]*$")
    stack_name = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    environment_name = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
    login = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
    branch_name = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}(?<!/)$")
    if enabled:
        for k in ("owner", "repository"):
            if not o.get(k):
                r.missing(f"github.{k}", f"the GitHub {k} name, because github.enabled is true")
    secrets: dict[str, Secret] = {}
    if (s := r.secret("githubSecrets")) is not None:
        try:
            obj = json.loads(s.reveal())
        except json.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict) or not all(isinstance(k, str) and gh_name.match(k) for k in obj):
            r.problems.append(
                f"{NAMESPACE}:githubSecrets = [secret]: expected an object of UPPER_CASE_NAME: value, names not starting with GITHUB_"
                " (pulumi config set --secret --path 'githubSecrets.NAME' VALUE)"
            )
        else:
            secrets = {k: Secret(str(v)) for k, v in obj.items()}
            for k in sorted(set(secrets) & set(GitHubConfig.RESERVED_SECRETS)):
                r.problems.append(f"{NAMESPACE}:githubSecrets.{k} = [secret]: expected another name: {k} is set from sshPrivateKey")

    def check_stacks(v: Any) -> dict[str, str] | None:
        if not (isinstance(v, dict) and v and all(isinstance(k, str) and stack_name.match(k) for k in v)):
            return None
        return v if all(isinstance(e, str) and environment_name.match(e) for e in v.values()) else None

    stacks: dict[str, str] = r.value(
        o,
        "github",
        "stacks",
        GitHubConfig().stacks,
        check_stacks,
        'an object of stack name: GitHub environment name in deploy order, like {"dev": "dev", "prod": "production"}'
        " (names of letters, digits, '_', '.' and '-')",
    )
    default_environment = stacks.get(stack, "production" if stack == "prod" else stack)
    environment = r.value(o, "github", "environment", default_environment, name, "a deployment environment name like 'production'")
    if enabled and stack in stacks and environment != stacks[stack]:
        r.fail(
            "github.environment",
            environment,
            f"{stacks[stack]!r}, the environment github.stacks gives stack {stack!r} (the deploy workflow deploys it there)",
        )

    reviewers: tuple[str, ...] = r.value(o, "github", "reviewers", (), _names, "a list of GitHub user names")
    if reviewers and (len(reviewers) > 6 or len(set(reviewers)) != len(reviewers) or not all(login.match(u) for u in reviewers)):
        r.fail("github.reviewers", list(reviewers), "at most 6 distinct GitHub user names like 'octocat' (letters, digits and single '-')")
        reviewers = ()
    wait = r.value(o, "github", "waitTimer", "0m", _duration, "a duration in minutes like '10m' (at most 30 days)")
    wait_minutes = int(duration_seconds(wait) // 60)
    if wait_minutes > 43200:
        r.fail("github.waitTimer", wait, "a duration in minutes like '10m' (at most 30 days)")
        wait_minutes = 0
    variables: dict[str, str] = r.value(o, "github", "variables", {}, _str_map, "an object of NAME: value")
    for k in variables:
        if not gh_name.match(k):
            r.fail(f"github.variables.{k}", variables[k], "a variable name in upper case, not starting with GITHUB_")
        elif k in GitHubConfig.RESERVED_VARIABLES:
            r.fail(
                f"github.variables.{k}",
                variables[k],
                f"a name other than {list(GitHubConfig.RESERVED_VARIABLES)}, which are set from the stack",
            )
    return GitHubConfig(
        enabled=enabled,
        owner=r.value(o, "github", "owner", None, name, "a GitHub user or organisation name"),
        repository=r.value(o, "github", "repository", None, name, "a repository name without the owner"),
        environment=environment,
        manage_repository_files=r.value(o, "github", "manageRepositoryFiles", False, _bool, "true or false"),
        branch=r.value(o, "github", "branch", "main", _str(branch_name), "a branch name like 'main'"),
        reviewers=reviewers,
        wait_timer_minutes=wait_minutes,
        protect_branch=r.value(o, "github", "protectBranch", False, _bool, "true or false"),
        public_url=r.value(o, "github", "publicUrl", None, _str(re.compile(r"^https?://\S+$")), "a URL like 'https://app.example.com'"),
        variables=variables,
        secrets=secrets,
        stacks=dict(stacks),
    )  # fmt: skip


# --------------------------------------------------------------------------- Pulumi-facing


def git_sha(env: Mapping[str, str], cwd: str = ".") -> str | None:
    """The commit being deployed: CUTOVER_GIT_SHA, then GITHUB_SHA, then `git rev-parse HEAD`."""
    import subprocess

    for var in ("CUTOVER_GIT_SHA", "GITHUB_SHA"):
        if env.get(var):
            return env[var][:40]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def uncommitted_changes(path: str, cwd: str = ".") -> bool:
    """True when `git status` lists changes (untracked files included) under `path`."""
    import subprocess

    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", path], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def load_config() -> StackConfig:  # pragma: no cover - exercised through the program tests
    """Read `cutover:*` from the Pulumi stack and validate it."""
    import os

    import pulumi
    from pulumi.runtime import config as rc

    prefix = f"{NAMESPACE}:"
    values = {**rc.get_config_env(), **rc.CONFIG.get()}
    raw = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
    secret = {k for k in raw if rc.is_config_secret(prefix + k) or prefix + k in rc.get_config_secret_keys_env()}
    # the tag is the checkout's commit unless CI (GITHUB_SHA) or the caller (CUTOVER_GIT_SHA) names it
    from_checkout = not (os.environ.get("CUTOVER_GIT_SHA") or os.environ.get("GITHUB_SHA"))
    return parse_config(raw, secret, pulumi.get_stack(), git_sha(os.environ), uncommitted_changes if from_checkout else None)
