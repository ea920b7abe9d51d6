"""One reader per section of the config: `roles`, `web`, `image`, and the rest.

Each takes the `_Reader` (components/config/checks.py), reads its keys with their defaults
and checks, records what is wrong, and returns its part of the model.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from components.config.checks import (
    ACME_DIRECTORY,
    CPUS_EXPECTED,
    DIGEST_REF,
    DURATION_EXPECTED,
    ENV_NAME,
    HOSTNAME,
    IMAGE_REF,
    KNOWN_HOSTS_LINE,
    MEMORY,
    PEM_CERTIFICATE,
    PORT,
    PORT_EXPECTED,
    REPOSITORY,
    RESERVED_ROLES,
    ROLE_NAME,
    SECTION_KEYS,
    TAG,
    _bool,
    _cpus,
    _int,
    _names,
    _Reader,
    _str,
    _str_list,
    _str_map,
    caddy_too_old,
    duration_seconds,
    private_key_problem,
)
from components.config.model import (
    SSH_URL,
    ClusterConfig,
    GitHubConfig,
    HealthcheckConfig,
    HostConfig,
    ImageConfig,
    PostgresConfig,
    ProxyConfig,
    RedisConfig,
    ReleasesConfig,
    RoleConfig,
    RoleHealthcheck,
    Secret,
    VerifyConfig,
    WebConfig,
    known_hosts_name,
)

# Docker reads a health check duration of 0 as "not set": the image's HEALTHCHECK value when it has one (moby
# v20.10.24 daemon/commit.go merge), else its own default (daemon/health.go monitor and handleProbeResult, through
# timeoutWithDefault: 30s for the interval and the timeout, none for the start period).
PROBE_ZERO = {
    "interval": "a duration above zero, like '2s': Docker reads 0 as the image's HEALTHCHECK interval, or its own default of 30s",
    "timeout": "a duration above zero, like '3s': Docker reads 0 as the image's HEALTHCHECK timeout, or its own default of 30s",
    "startPeriod": "a duration above zero, like '10s' ('1ms' for next to none): Docker reads 0 as the image's HEALTHCHECK"
    " start period, not as none",
}
# A stop timeout is whole seconds between SIGTERM and SIGKILL (moby daemon/stop.go containerStop; the API's
# StopTimeout is an int of seconds). 0 kills at once: the provider deletes a container with ContainerStop and a
# timeout of destroy_grace_seconds (kreuzwerker v4.5.0 resource_docker_container_funcs.go resourceDockerContainerDelete),
# the handover runs `docker stop --time` (components/release/go_live.py); and a stop_timeout of 0 is not sent at all
# (resourceDockerContainerCreate, d.GetOk), so the engine's own 10s would apply to any other stop.
STOP_ZERO = "at least 1s: it is the time after SIGTERM before SIGKILL, and 0 kills the container at once, cutting off work in flight"
# The provider waits wait_timeout seconds for the container to be healthy (resource_docker_container_funcs.go:614).
WAIT_ZERO = "at least 1s: it is how long a new container may take to become healthy, and 0 gives up at once"


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
        repository=repository,
        tag=tag or "unknown",
        context=context,
        dockerfile=r.value(o, "image", "dockerfile", "Dockerfile", _str(), "a Dockerfile path relative to the context"),
        platform=r.value(
            o,
            "image",
            "platform",
            None,
            _str(re.compile(r"^[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?$")),
            "a platform like 'linux/amd64' or 'linux/arm64'",
        ),
        build_args=r.value(o, "image", "buildArgs", {}, _str_map, "an object of NAME: value build arguments"),
        extra_tags=extra,
        push=push,
        cache_from_registry=r.value(o, "image", "cacheFromRegistry", True, _bool, "true or false"),
        registry_username=username,
        registry_password=password,
        ref=r.value(o, "image", "ref", None, _str(DIGEST_REF), "a digest-pinned reference like 'ghcr.io/acme/web@sha256:<64 hex>'"),
        git_sha=git_sha or "",
        # off unless asked for: the prune trims the whole BuildKit cache of the machine running pulumi (components/release/image.py)
        build_cache_mb=_memory_mb(r, o, "image", "0", key="buildCacheKept", zero=True),
    )


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
        expected = known_hosts_name(m["host"], int(m["port"] or 22))
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
        r.problems.append(f"{r.ns}:sshPrivateKey = [secret]: expected {problem}")
        key = None
    return HostConfig(url=url, known_hosts=known, private_key=key)


def _memory_mb(r: _Reader, o: Mapping[str, Any], section: str, default: str, key: str = "memory", zero: bool = False) -> int:
    """A size like '256m' or '1g', in MB ('0' too, when `zero`)."""
    expected = "a memory limit like '256m' or '1g'" if not zero else "a size like '5g' or '500m' ('0': no bound)"
    size = r.value(o, section, key, default, lambda v: "0" if zero and str(v) == "0" else _str(MEMORY)(v), expected)
    m = MEMORY.match(size)
    if not m:
        return 0 if size == "0" else int(default[:-1]) * (1024 if default[-1] in "gG" else 1)
    mb = int(m[1]) * (1024 if m[2].lower() == "g" else 1)
    if not zero and mb < 6:
        # the engine refuses a limit under 6MB when it creates the container (moby v20.10.24 daemon/daemon_unix.go
        # verifyPlatformContainerResources, linuxMinMemory), and the provider does not send 0 at all, which is
        # no limit (kreuzwerker v4.5.0 resource_docker_container_funcs.go:334, d.GetOk("memory"))
        r.fail(f"{section}.{key}", size, "at least '6m': Docker refuses a memory limit under 6MB, and 0 would be no limit at all")
        return int(default[:-1]) * (1024 if default[-1] in "gG" else 1)
    return mb


def _parse_roles(r: _Reader) -> tuple[RoleConfig, ...]:
    """`roles.<name>`: each with its command, a health check command, replicas and resources."""
    raw = r.object("roles")
    roles: list[RoleConfig] = []
    for name, value in raw.items():
        key = f"roles.{name}"
        if not (isinstance(name, str) and ROLE_NAME.match(name)) or name in RESERVED_ROLES:
            r.fail(key, value, f"a role name of lowercase letters, digits and '-' (at most 20), other than {sorted(RESERVED_ROLES)}")
            continue
        if not isinstance(value, dict):
            r.fail(key, value, "an object with at least `command` and `healthcheck.command`")
            continue
        o: dict[str, Any] = value
        r.unknown(key, o, SECTION_KEYS["roles.<name>"])
        command_expected = "the role's command as a list of strings, like ['python', '-m', 'worker']"
        if not o.get("command"):
            r.missing(f"{key}.command", command_expected)
        command: tuple[str, ...] = r.value(o, key, "command", (), _str_list, command_expected)
        h: dict[str, Any] = o["healthcheck"] if isinstance(o.get("healthcheck"), dict) else {}
        if "healthcheck" in o and not isinstance(o["healthcheck"], dict):
            r.fail(f"{key}.healthcheck", o["healthcheck"], "an object with a `command`")
        r.unknown(f"{key}.healthcheck", h, SECTION_KEYS["roles.<name>.healthcheck"])
        probe_expected = (
            "a probe command that needs no HTTP, as a list of strings, like ['python', '-m', 'heartbeat', '30']"
            " (exit 0 when the role is well: README shows the heartbeat-file pattern)"
        )
        if not h.get("command"):
            r.missing(f"{key}.healthcheck.command", probe_expected)
        hk = f"{key}.healthcheck"
        probe: tuple[str, ...] = r.value(h, hk, "command", (), _str_list, probe_expected)
        healthcheck = RoleHealthcheck(
            command=probe,
            interval=r.duration(h, hk, "interval", "5s", zero=PROBE_ZERO["interval"]),
            timeout=r.duration(h, hk, "timeout", "3s", zero=PROBE_ZERO["timeout"]),
            retries=r.value(h, hk, "retries", 3, _int(1, 100), "a whole number from 1 to 100"),
            start_period=r.duration(h, hk, "startPeriod", "10s", zero=PROBE_ZERO["startPeriod"]),
        )
        overlap = r.value(o, key, "overlap", True, _bool, "true (new containers beside the old ones) or false (never two at once)")
        replicas = r.value(o, key, "replicas", 1, _int(1, 20), "a whole number of containers from 1 to 20")
        if not overlap and replicas != 1:
            r.fail(f"{key}.replicas", replicas, f"1: {key}.overlap is false, so the role runs one container, never two")
        roles.append(
            RoleConfig(
                name=name,
                command=command,
                healthcheck=healthcheck,
                replicas=replicas,
                overlap=overlap,
                env=r.value(o, key, "env", {}, _str_map, "an object of NAME: value environment variables, one line each"),
                memory_mb=_memory_mb(r, o, key, "256m"),
                cpus=r.value(o, key, "cpus", "1.0", _cpus, CPUS_EXPECTED),
                stop_timeout_s=int(duration_seconds(r.duration(o, key, "stopTimeout", "10m", zero=STOP_ZERO, whole="seconds"))),
                wait_timeout_s=int(duration_seconds(r.duration(o, key, "waitTimeout", "2m", zero=WAIT_ZERO, whole="seconds"))),
            )
        )
    return tuple(roles)


def _secret_object(r: _Reader, key: str, name: re.Pattern[str], expected: str) -> dict[str, str]:
    """A secret key holding a JSON object of NAME: value ({} when unset, or not such an object: then a problem)."""
    s = r.secret(key)
    if s is None:
        return {}
    try:
        obj = json.loads(s.reveal())
    except json.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and name.match(k) for k in obj):
        r.problems.append(f"{r.ns}:{key} = [secret]: expected {expected}")
        return {}
    return {k: str(v) for k, v in obj.items()}


def _parse_web(r: _Reader) -> WebConfig:
    o = r.object("web")
    r.unknown("web", o, SECTION_KEYS["web"])
    memory_mb = _memory_mb(r, o, "web", "512m")
    stop = r.duration(o, "web", "stopTimeout", "30s", zero=STOP_ZERO, whole="seconds")
    wait = r.duration(o, "web", "waitTimeout", "2m", zero=WAIT_ZERO, whole="seconds")
    secret_env: dict[str, Secret] = {}
    env_obj = _secret_object(
        r, "secretEnv", ENV_NAME, "an object of NAME: value (pulumi config set --secret --path 'secretEnv.NAME' VALUE)"
    )
    if any("\n" in v for v in env_obj.values()):
        bad = sorted(k for k, v in env_obj.items() if "\n" in v)
        r.problems.append(f"{r.ns}:secretEnv = [secret]: expected values of one line; {', '.join(bad)} span several")
    else:
        secret_env = {k: Secret(v) for k, v in env_obj.items()}
    env: dict[str, str] = r.value(o, "web", "env", {}, _str_map, "an object of NAME: value environment variables, one line each")
    for k in set(env) & set(secret_env):
        r.fail(f"web.env.{k}", env[k], f"{k} only once: it is also in secretEnv")
    return WebConfig(
        enabled=r.value(o, "web", "enabled", True, _bool, "true or false (false: no web role and no proxy)"),
        port=r.value(o, "web", "port", 8000, PORT, PORT_EXPECTED),
        replicas=r.value(o, "web", "replicas", 1, _int(1, 20), "a whole number of containers from 1 to 20"),
        env=env,
        secret_env=secret_env,
        memory_mb=memory_mb,
        cpus=r.value(o, "web", "cpus", "1.0", _cpus, CPUS_EXPECTED),
        stop_timeout_s=int(duration_seconds(stop)),
        wait_timeout_s=int(duration_seconds(wait)),
        user=r.value(
            o,
            "web",
            "user",
            "10001:10001",
            _str(re.compile(r"^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$")),
            "a user like '10001' or '10001:10001'",
        ),
        read_only=r.value(o, "web", "readOnly", True, _bool, "true or false"),
        tmpfs=r.value(
            o,
            "web",
            "tmpfs",
            ("/tmp",),
            lambda v: t if (t := _names(v)) is not None and all(p.startswith("/") for p in t) else None,
            "a list of absolute paths",
        ),
        command=r.value(o, "web", "command", (), _str_list, "a command as a list of strings"),
    )


def _parse_healthcheck(r: _Reader, web_port: int) -> HealthcheckConfig:
    o = r.object("healthcheck")
    r.unknown("healthcheck", o, SECTION_KEYS["healthcheck"])
    return HealthcheckConfig(
        path=r.value(o, "healthcheck", "path", "/health", _str(re.compile(r"^/[\x21-\x7e]*$")), "an absolute URL path like '/health'"),
        port=r.value(o, "healthcheck", "port", web_port, PORT, PORT_EXPECTED),
        interval=r.duration(o, "healthcheck", "interval", "2s", zero=PROBE_ZERO["interval"]),
        timeout=r.duration(o, "healthcheck", "timeout", "3s", zero=PROBE_ZERO["timeout"]),
        retries=r.value(o, "healthcheck", "retries", 3, _int(1, 100), "a whole number from 1 to 100"),
        start_period=r.duration(o, "healthcheck", "startPeriod", "10s", zero=PROBE_ZERO["startPeriod"]),
        command=r.value(o, "healthcheck", "command", (), _str_list, "a probe command as a list of strings"),
    )


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
    drain = r.duration(o, "proxy", "drain", "2s", whole="seconds")  # the go-live script sleeps whole seconds
    # caddy modules/caddyhttp/reverseproxy/healthchecks.go ActiveHealthChecks.Provision: a timeout of 0 is 5s
    upstream_timeout = r.duration(
        o, "proxy", "upstreamTimeout", "1s", zero="a duration above zero, like '1s': Caddy reads 0 as its default of 5s"
    )
    image = r.value(o, "proxy", "image", "caddy:2", _str(IMAGE_REF), "an image reference like 'caddy:2' (lowercase name, optional tag)")
    if caddy_too_old(image):
        r.fail("proxy.image", image, "Caddy 2.8 or newer (the switch relies on its {file.*} placeholders), like 'caddy:2'")
    keeper_image = r.value(
        o, "proxy", "keeperImage", "docker:28-cli", _str(IMAGE_REF), "an image with the Docker CLI, like 'docker:28-cli'"
    )
    acme_ca = r.value(
        o,
        "proxy",
        "acmeCA",
        None,
        _str(ACME_DIRECTORY),
        "the https:// URL of an ACME directory, like 'https://acme-staging-v02.api.letsencrypt.org/directory'",
    )
    acme_ca_root = r.value(
        o,
        "proxy",
        "acmeCARoot",
        None,
        _str(PEM_CERTIFICATE),
        "a PEM certificate: '-----BEGIN CERTIFICATE-----' ... '-----END CERTIFICATE-----'",
    )
    for key, value in (("acmeCA", acme_ca), ("acmeCARoot", acme_ca_root)):
        if value is not None and domain is None:
            r.fail(
                f"proxy.{key}",
                "(set)" if key == "acmeCARoot" else value,
                "to be set only with proxy.domain: certificates are obtained for the domain",
            )
    return ProxyConfig(
        image=image,
        keeper_image=keeper_image,
        http_port=http,
        https_port=https,
        domain=domain,
        email=r.value(o, "proxy", "email", None, _str(re.compile(r"^[^@\s]+@[^@\s]+$")), "an email address for the ACME account"),
        drain_s=int(duration_seconds(drain)),
        upstream_timeout_ms=max(1, round(duration_seconds(upstream_timeout) * 1000)),
        # the engine parses the address when it creates the ports container and fails there ("invalid IP address"),
        # mid-update; Python's ipaddress reads IPv4 and IPv6 addresses as strictly
        bind_address=r.value(o, "proxy", "bindAddress", None, _ip_address, "an IP address like '127.0.0.1' or '::1'"),
        acme_ca=acme_ca,
        acme_ca_root=acme_ca_root,
    )


def _ip_address(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return None
    return v  # as given: another spelling of the same address would be a change to the ports container


def _parse_accessories(r: _Reader) -> tuple[PostgresConfig, RedisConfig]:
    p = r.object("postgres")
    r.unknown("postgres", p, SECTION_KEYS["postgres"])
    p_on = r.value(p, "postgres", "enabled", False, _bool, "true or false")
    postgres = PostgresConfig(
        enabled=p_on,
        image=r.value(p, "postgres", "image", "postgres:16", _str(IMAGE_REF), "an image reference like 'postgres:16'"),
        database=r.value(
            p,
            "postgres",
            "database",
            "app",
            _str(re.compile(r"^[a-z_][a-z0-9_]*$")),
            "a database name of lowercase letters, digits and '_'",
        ),
        user=r.value(
            p, "postgres", "user", "app", _str(re.compile(r"^[a-z_][a-z0-9_]*$")), "a user name of lowercase letters, digits and '_'"
        ),
        password=r.secret("postgresPassword", "postgres.enabled is true" if p_on else None),
        backups_kept=r.value(p, "postgres", "backupsKept", 10, _int(0, 1000), "a whole number of dumps from 0 (none) to 1000"),
    )
    d = r.object("redis")
    r.unknown("redis", d, SECTION_KEYS["redis"])
    d_on = r.value(d, "redis", "enabled", False, _bool, "true or false")
    redis = RedisConfig(
        enabled=d_on,
        image=r.value(d, "redis", "image", "redis:7", _str(IMAGE_REF), "an image reference like 'redis:7'"),
        password=r.secret("redisPassword", "redis.enabled is true" if d_on else None),
    )
    return postgres, redis


def _parse_releases(r: _Reader) -> ReleasesConfig:
    o = r.object("releases")
    r.unknown("releases", o, SECTION_KEYS["releases"])
    return ReleasesConfig(
        history_size=r.value(o, "releases", "historySize", 10, _int(1, 100), "a whole number from 1 to 100"),
        promote_from=r.value(
            o,
            "releases",
            "promoteFrom",
            None,
            _str(re.compile(r"^[\w.-]+(/[\w.-]+){0,2}$")),
            "a stack name like 'dev' or 'org/cutover/dev'",
        ),
        probation_s=int(
            duration_seconds(
                r.duration(o, "releases", "probation", "30s", whole="seconds", expected=DURATION_EXPECTED + " (0s: no probation)")
            )
        ),
        probation_error_rate=r.value(o, "releases", "probationErrorRate", 10, _int(1, 100), "a whole percentage from 1 to 100"),
        canary_s=int(
            duration_seconds(r.duration(o, "releases", "canary", "0s", whole="seconds", expected=DURATION_EXPECTED + " (0s: no canary)"))
        ),
        images_kept=r.value(o, "releases", "imagesKept", 5, _int(2, 100), "a whole number of images from 2 to 100"),
    )


# Swarm's constraint syntax (docker/cli service create --constraint): an attribute, == or !=, a value
PLACEMENT = re.compile(
    r"^(node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[A-Za-z0-9_.-]+)|engine\.labels\.[A-Za-z0-9_.-]+)"
    r"\s*(==|!=)\s*[A-Za-z0-9_.:/-]+$"
)
PLACEMENT_EXPECTED = "a list of Swarm constraints like ['node.role==worker', 'node.labels.app==true']"
SPREAD = re.compile(r"^(node\.labels|engine\.labels)\.[A-Za-z0-9_.-]+$")


def _parse_cluster(r: _Reader, roles: tuple[RoleConfig, ...], image: ImageConfig) -> ClusterConfig:
    o = r.object("cluster")
    r.unknown("cluster", o, SECTION_KEYS["cluster"])
    enabled = r.value(o, "cluster", "enabled", False, _bool, "true (the host is a Swarm manager) or false (one Docker host)")
    placement: tuple[str, ...] = r.value(
        o, "cluster", "placement", (), lambda v: t if (t := _names(v)) is not None and all(PLACEMENT.match(c) for c in t) else None,
        PLACEMENT_EXPECTED,
    )  # fmt: skip
    spread = r.value(o, "cluster", "spread", None, _str(SPREAD), "a node label like 'node.labels.zone'")
    # the provider waits this long for the service's tasks (converge_config.timeout), and 0 gives up at once
    converge = r.duration(
        o,
        "cluster",
        "convergeTimeout",
        "3m",
        zero="at least 1s: it is how long a release's services may take to run healthy",
        whole="seconds",
    )
    if enabled and not image.push and image.ref is None:
        # an image that is not pushed runs by its local ID, which the other nodes cannot pull
        r.fail("image.push", False, "true on a cluster (cluster.enabled): every node pulls the release from the registry")
    if enabled:
        for role in roles:
            if not role.overlap:
                # a single-instance role's handover stops one container and starts another on the host; on a
                # cluster its one task may run on any node, which that handover cannot reach
                r.fail(
                    f"roles.{role.name}.overlap", False, "true on a cluster (cluster.enabled): single-instance roles run on one host only"
                )
    return ClusterConfig(enabled=enabled, placement=placement, spread=spread, converge_timeout_s=int(duration_seconds(converge)))


def _parse_verify(r: _Reader) -> VerifyConfig:
    o = r.object("verify")
    r.unknown("verify", o, SECTION_KEYS["verify"])
    # the script sleeps whole seconds between attempts (components/release/go_live.py verify_steps)
    interval = r.duration(o, "verify", "interval", "2s", zero="at least 1s: the pause between attempts", whole="seconds")
    return VerifyConfig(
        enabled=r.value(o, "verify", "enabled", True, _bool, "true or false"),
        expect_version=r.value(o, "verify", "expectVersion", False, _bool, "true or false"),
        attempts=r.value(o, "verify", "attempts", 15, _int(1, 600), "a whole number from 1 to 600"),
        interval_s=int(duration_seconds(interval)),
    )


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
    secrets: dict[str, Secret] = {
        k: Secret(v)
        for k, v in _secret_object(
            r,
            "githubSecrets",
            gh_name,
            "an object of UPPER_CASE_NAME: value, names not starting with GITHUB_ (pulumi config set --secret --path 'githubSecrets.NAME' VALUE)",
        ).items()
    }
    for k in sorted(set(secrets) & set(GitHubConfig.RESERVED_SECRETS)):
        source = GitHubConfig.RESERVED_SECRETS[k]
        r.problems.append(f"{r.ns}:githubSecrets.{k} = [secret]: expected another name: {k} is set from {r.ns}:{source}")

    # Pulumi hands an object to the program with its keys sorted by name, whatever order the stack file gives
    # (the CLI's config values are JSON it marshals from a Go map; tests/test_real_engine.py shows it): a list
    # keeps the deploy order, an object only when it names one stack.
    def check_stacks(v: Any) -> dict[str, str] | None:
        if isinstance(v, dict) and len(v) == 1:
            pairs = list(v.items())
        elif isinstance(v, list) and v and all(isinstance(e, dict) and len(e) == 1 for e in v):
            pairs = [next(iter(e.items())) for e in v]
        else:
            return None
        if not all(isinstance(k, str) and stack_name.match(k) and isinstance(e, str) and environment_name.match(e) for k, e in pairs):
            return None
        stacks_, environments = [k for k, _ in pairs], [e for _, e in pairs]
        return dict(pairs) if len(set(stacks_)) == len(stacks_) and len(set(environments)) == len(environments) else None

    given_stacks = o.get("stacks")
    if isinstance(given_stacks, dict) and len(given_stacks) > 1:
        in_list = ", ".join(json.dumps({k: v}) for k, v in given_stacks.items())
        r.fail(
            "github.stacks",
            given_stacks,
            f"a list, which keeps the deploy order, like [{in_list}]: Pulumi hands an object's keys to the program sorted"
            f" by name, so this one would deploy {' before '.join(sorted(map(str, given_stacks)))}",
        )
        o = {k: v for k, v in o.items() if k != "stacks"}
    stacks: dict[str, str] = r.value(
        o,
        "github",
        "stacks",
        GitHubConfig().stacks,
        check_stacks,
        'a list of one {stack name: GitHub environment name} per stack, in deploy order, like [{"staging": "staging"},'
        ' {"prod": "production"}], or one stack\'s {"prod": "production"} (names of letters, digits, \'_\', \'.\' and \'-\';'
        " each stack and each environment once)",
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
    # GitHub's wait_timer is an integer of minutes (REST API, "Create or update an environment": 0 to 43,200; pulumi-github
    # RepositoryEnvironment.waitTimer, an integer): '30s' would be no wait at all
    wait = r.duration(o, "github", "waitTimer", "0m", whole="minutes", expected="a duration in minutes like '10m' (at most 30 days)")
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
        admin_bypass=r.value(o, "github", "adminBypass", False, _bool, "true or false"),
        files_branch=r.value(o, "github", "filesBranch", "cutover/pipeline", _str(branch_name), "a branch name like 'cutover/pipeline'"),
    )
