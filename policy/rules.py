"""cutover's guardrails: pure functions of one resource, as a policy analyzer receives it.

Each rule takes a `Resource` (its type token, its name, its inputs and its delete-before-replace
option) and the `StackFacts` read from the stack's config, and returns its violations, each a
message naming the resource, the input and what is expected. Nothing here imports Pulumi: the
pack (policy/pack.py) turns the analyzer's arguments into a `Resource`, the tests turn a
registration captured under Pulumi's mocks into one.

What the analyzer receives, and so what these rules are written against:

- the inputs after the provider's Check, in the provider schema's camelCase (`networkMode`,
  `logOpts`, `healthcheck.startPeriod`), as `pulumi preview` and `pulumi up` are about to send
  them (pulumi/pulumi pkg/resource/deploy/step_generator.go: Check, then `analyzeAll` with those
  inputs);
- in a preview, a value that depends on another resource's output is unknown: it arrives as
  `UNKNOWN` (policy/pack.py), and a rule says nothing about what it cannot see. `pulumi up`
  analyzes the same resource again once every input is known, before the resource is created;
- secrets arrive as their plain values, with nothing saying they were secret: the engine sends
  them marked (sdk/go/common/resource/plugin/analyzer_plugin.go `Analyze`, `KeepSecrets: true`),
  and pulumi-policy drops the mark before a validation sees them (pulumi/pulumi-policy
  sdk/python/lib/pulumi_policy/policy.py `_PolicyAnalyzerServicer.Analyze` calls
  `deserialize_properties` without `proxy_secrets`; deserialize.py `_deserialize_property`
  returns a secret's bare value). So `secrets-stay-secret` cannot ask whether an input is a
  Pulumi secret: it looks for the stack's secret values themselves, which the analyzer gets
  decrypted in PULUMI_CONFIG (pkg/engine/update.go decrypts the stack config into
  `PolicyAnalyzerOptions.Config`; sdk/python/cmd/pulumi-language-python/main.go `RunPlugin`
  sets it as PULUMI_CONFIG for a policy pack).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from components.config.checks import DIGEST_REF, SECRET_KEYS
from components.config.model import NAMESPACE


class _Unknown:
    """A value a preview cannot know yet (another resource's output)."""

    def __repr__(self) -> str:
        return "<unknown during preview>"


UNKNOWN: Final = _Unknown()

CONTAINER: Final = "docker:index/container:Container"
SERVICE: Final = "docker:index/service:Service"
REMOTE_IMAGE: Final = "docker:index/remoteImage:RemoteImage"
IMAGE: Final = "docker:index/image:Image"
DOCKER_PROVIDER: Final = "pulumi:providers:docker"
REMOTE_COMMAND: Final = "command:remote:Command"
COMMANDS: Final = ("command:local:Command", REMOTE_COMMAND)
GITHUB_VARIABLES: Final = (
    "github:index/actionsVariable:ActionsVariable",
    "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable",
)
GITHUB_FILE: Final = "github:index/repositoryFile:RepositoryFile"

# The `cutover.role` label of the containers that are not the app's (components/edge/proxy.py, accessories.py).
INFRA_ROLES: Final = frozenset({"ports", "proxy", "proxy-keeper", "postgres", "redis"})
KEEPER_ROLE: Final = "proxy-keeper"
# The environment variables through which the program hands a container a secret, as a Pulumi secret
# (components/release/containers.py shared_env, components/accessories/databases.py), besides the names under `secretEnv`.
SECRET_ENV_NAMES: Final = frozenset({"DATABASE_URL", "REDIS_URL", "POSTGRES_PASSWORD", "REDIS_PASSWORD"})
# Shorter secret values are not searched for: they cannot be told from ordinary text.
MIN_SECRET_LENGTH: Final = 8
# Host paths that are, or hold, the Docker engine's socket.
SOCKET_DIRS: Final = frozenset({"/", "/run", "/var/run", "/var"})
IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
# Log drivers that write on the host without rotating unless told to (json-file's max-size: moby
# daemon/logger/jsonfilelog; `local` rotates by default, 20m x 5: daemon/logger/local/config.go).
ROTATED_WITH_MAX_SIZE: Final = frozenset({"json-file"})
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS_S: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Resource:
    """One resource as the analyzer sees it (see the module's docstring)."""

    type: str
    name: str
    props: Mapping[str, Any]
    # the program's delete_before_replace option; None when it does not set it
    delete_before_replace: bool | None = None


@dataclass(frozen=True)
class StackFacts:
    """What the rules need from the stack's config: its secret values, the names that may carry them."""

    secret_values: tuple[str, ...] = ()
    secret_env_names: frozenset[str] = SECRET_ENV_NAMES
    app_repository: str | None = None
    stack: str = ""

    @classmethod
    def from_config(cls, config: Mapping[str, str], stack: str = "") -> StackFacts:
        """From the stack's config as the analyzer gets it: `cutover:key` -> value (objects as JSON)."""
        values: list[str] = []
        env_names = set(SECRET_ENV_NAMES)
        for key, text in config.items():
            ns, _, name = key.partition(":")
            if not ((ns == NAMESPACE and name in SECRET_KEYS) or key == "github:token"):
                continue
            parsed = _json_object(text)
            if parsed is None:
                values.append(str(text))
                continue
            values += [str(v) for v in parsed.values()]
            if name == "secretEnv":
                env_names |= set(parsed)
        image = _json_object(config.get(f"{NAMESPACE}:image", ""))
        repository = image.get("repository") if image else None
        searched = tuple(sorted({v for v in values if len(v) >= MIN_SECRET_LENGTH}, key=lambda v: (-len(v), v)))
        return cls(searched, frozenset(env_names), repository if isinstance(repository, str) else None, stack)


def _json_object(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    mandatory: bool
    check: Callable[[Resource, StackFacts], list[str]] = field(repr=False)


# --- reading inputs --------------------------------------------------------------------------


def _known(value: Any) -> bool:
    return value is not UNKNOWN and value is not None


def _get(props: Any, path: str) -> Any:
    """props["a"]["b"] for "a.b"; None when absent, UNKNOWN when unknown on the way."""
    value = props
    for part in path.split("."):
        if value is UNKNOWN:
            return UNKNOWN
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []


def _labels(value: Any) -> dict[str, Any]:
    """The provider's labels, a list of {label, value}."""
    return {str(x.get("label")): x.get("value") for x in _list(value) if isinstance(x, Mapping)}


def _role(r: Resource) -> Any:
    """The `cutover.role` label of a container or a service (None for a resource the program does not label)."""
    return _labels(r.props.get("labels")).get("cutover.role")


def _is_app(r: Resource) -> bool:
    role = _role(r)
    return r.type in (CONTAINER, SERVICE) and isinstance(role, str) and role not in INFRA_ROLES


def _container_spec(r: Resource) -> Mapping[str, Any]:
    spec = _get(r.props, "taskSpec.containerSpec")
    return spec if isinstance(spec, Mapping) else {}


def go_seconds(value: Any) -> float | None:
    """A Go duration ("10s", "1m30s", "1.5s", "500ms") in seconds; None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    parts = _GO_DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _GO_UNITS_S[u] for n, u in parts)


def _where(r: Resource) -> str:
    return f"{r.name} ({r.type})"


# --- mandatory rules -------------------------------------------------------------------------


def app_image_by_digest(r: Resource, facts: StackFacts) -> list[str]:
    """An app container runs exactly the image a release recorded: a digest, never a tag that can move."""
    expected = "a digest: `<repository>@sha256:<64 hex>`, or the `sha256:<64 hex>` ID of an image pulled by digest"
    if r.type == CONTAINER and _is_app(r):
        image = r.props.get("image")
        if _known(image) and not (IMAGE_ID.match(str(image)) or DIGEST_REF.match(str(image))):
            return [f"{_where(r)}: input `image` is {image!r}, a tag; an app container runs {expected}"]
    if r.type == SERVICE and _is_app(r):
        image = _container_spec(r).get("image")
        if _known(image) and not DIGEST_REF.match(str(image)):
            return [
                f"{_where(r)}: input `taskSpec.containerSpec.image` is {image!r}; every node pulls an app service's image,"
                " so it is `<repository>@sha256:<64 hex>`"
            ]
    if r.type == REMOTE_IMAGE and facts.app_repository:
        name = r.props.get("name")
        repo = facts.app_repository
        of_app = isinstance(name, str) and (name == repo or name.startswith((f"{repo}:", f"{repo}@")))
        if of_app and not (IMAGE_ID.match(str(name)) or DIGEST_REF.match(str(name))):
            return [f"{_where(r)}: input `name` is {name!r}, the app's image by a tag; the host pulls {expected}"]
    return []


def web_healthcheck(r: Resource, facts: StackFacts) -> list[str]:
    """A web container has a health check, and the wait for it outlasts its start period plus one interval."""
    if r.type == CONTAINER and _role(r) == "web":
        check, prefix = r.props.get("healthcheck"), "healthcheck"
        wait: Any = r.props.get("waitTimeout") if r.props.get("wait") is True else None
        wait_key = "waitTimeout"
        if r.props.get("wait") is not True and _known(r.props.get("wait")):
            return [f"{_where(r)}: input `wait` is {r.props.get('wait')!r}; a web container is waited for until healthy: true"]
    elif r.type == SERVICE and _role(r) == "web":
        check, prefix = _container_spec(r).get("healthcheck"), "taskSpec.containerSpec.healthcheck"
        wait, wait_key = go_seconds(_get(r.props, "convergeConfig.timeout")), "convergeConfig.timeout"
        if _get(r.props, "convergeConfig") is None:
            return [f"{_where(r)}: input `convergeConfig` is not set; a web service is waited for until its tasks run healthy"]
    else:
        return []
    if check is UNKNOWN:
        return []
    tests = _list(_get(check, "tests"))
    if not tests or tests[0] == "NONE":
        return [f"{_where(r)}: input `{prefix}.tests` is {tests!r}; a web container has a health check (`CMD ...` or `CMD-SHELL ...`)"]
    start, interval, timeout = (go_seconds(_get(check, k)) for k in ("startPeriod", "interval", "timeout"))
    if start is None or interval is None or timeout is None:
        return [
            f"{_where(r)}: inputs `{prefix}.startPeriod`, `.interval` and `.timeout` are "
            f"{_get(check, 'startPeriod')!r}, {_get(check, 'interval')!r}, {_get(check, 'timeout')!r}; each a duration like '10s'"
        ]
    if not isinstance(wait, (int, float)) or isinstance(wait, bool):
        return [] if wait is UNKNOWN else [f"{_where(r)}: input `{wait_key}` is {wait!r}; a number of seconds to wait for health"]
    # The app may use all its start period; the first probe after it comes within one interval. The same
    # bound as the stack's config check of web.waitTimeout (components/config/sections.py), so a config the
    # program accepts is never refused here.
    needed = start + interval
    if wait < needed:
        return [
            f"{_where(r)}: input `{wait_key}` is {wait:g}s, but `{prefix}.startPeriod` + `.interval` is {needed:g}s:"
            f" a container that needs its start period would be refused as unhealthy; expected {wait_key} >= {needed:g}s"
        ]
    return []


def _host_paths(r: Resource) -> Iterator[tuple[str, str]]:
    """(input, host path) of every bind mount of a container or a service."""
    for i, v in enumerate(_list(r.props.get("volumes"))):
        if isinstance(v, Mapping) and isinstance(v.get("hostPath"), str):
            yield f"volumes[{i}].hostPath", v["hostPath"]
    mounts = [("mounts", r.props.get("mounts")), ("taskSpec.containerSpec.mounts", _container_spec(r).get("mounts"))]
    for key, value in mounts:
        for i, m in enumerate(_list(value)):
            if isinstance(m, Mapping) and m.get("type") == "bind" and isinstance(m.get("source"), str):
                yield f"{key}[{i}].source", m["source"]


def _is_engine_socket(path: str) -> bool:
    clean = path.rstrip("/") or "/"
    return clean.endswith("/docker.sock") or clean in SOCKET_DIRS


def no_host_access(r: Resource, facts: StackFacts) -> list[str]:
    """No container gets the host: not privileged, not the host's namespaces, not the engine's socket.

    The one exception is the proxy keeper's socket (components/edge/containers.py proxy_keeper_container): after an
    engine restart Docker may start Caddy before the container whose network it joins, refuse that start
    and never retry it (moby issue 50326), and only the engine's API, through its socket, can start it
    again. It is allowed the socket alone, with no network (`networkMode` "none"), never privileged; the
    socket still gives root on the host, so pin the keeper's image (`infrastructure-images-pinned`)."""
    if r.type not in (CONTAINER, SERVICE):
        return []
    problems: list[str] = []
    if r.props.get("privileged") is True:
        problems.append(f"{_where(r)}: input `privileged` is true; no container is privileged: false or unset")
    for key in ("networkMode", "pidMode", "ipcMode", "usernsMode", "cgroupnsMode"):
        if r.props.get(key) == "host":
            problems.append(f"{_where(r)}: input `{key}` is 'host'; no container shares the host's namespaces")
    adds = [*_list(_get(r.props, "capabilities.adds")), *_list(_container_spec(r).get("capAdds"))]
    for cap in adds:
        if isinstance(cap, str) and cap.upper().removeprefix("CAP_") in ("ALL", "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "NET_ADMIN"):
            problems.append(f"{_where(r)}: capability {cap!r} is added; no container gets the host's administration capabilities")
    keeper = r.type == CONTAINER and _role(r) == KEEPER_ROLE
    mounts = list(_host_paths(r))
    for key, path in mounts:
        if not _is_engine_socket(path):
            continue
        if keeper and r.props.get("networkMode") == "none" and len(mounts) == 1 and path.endswith("/docker.sock"):
            continue  # the proxy keeper: see the docstring
        why = (
            " (the proxy keeper may mount the socket alone, with networkMode 'none')"
            if keeper
            else "; only the proxy keeper mounts it, to start Caddy again after an engine restart"
        )
        problems.append(f"{_where(r)}: input `{key}` is {path!r}, the Docker engine's socket (root on the host){why}")
    return problems


def log_rotation(r: Resource, facts: StackFacts) -> list[str]:
    """Every container's logs rotate: a log driver is named, json-file with a max-size."""
    if r.type == CONTAINER:
        driver, opts, keys = r.props.get("logDriver"), r.props.get("logOpts"), ("logDriver", "logOpts")
    elif r.type == SERVICE:
        driver, opts = _get(r.props, "taskSpec.logDriver.name"), _get(r.props, "taskSpec.logDriver.options")
        keys = ("taskSpec.logDriver.name", "taskSpec.logDriver.options")
    else:
        return []
    if driver is UNKNOWN or opts is UNKNOWN:
        return []
    if not driver:
        return [
            f"{_where(r)}: input `{keys[0]}` is not set; the engine's default (json-file) never rotates:"
            f" expected 'json-file' with `{keys[1]}` max-size (and max-file), or 'local'"
        ]
    if driver in ROTATED_WITH_MAX_SIZE and not (isinstance(opts, Mapping) and opts.get("max-size")):
        return [f"{_where(r)}: input `{keys[1]}` is {opts!r}; the {driver} log driver rotates only with a max-size, like '10m'"]
    return []


def _plain_places(r: Resource) -> Iterator[tuple[str, Any]]:
    """(input, value) of every place where a value is plain text, whatever Pulumi's secret marking says."""
    if r.type == CONTAINER:
        for i, x in enumerate(_list(r.props.get("labels"))):
            yield f"labels[{i}].value", _get(x, "value")
        for key in ("command", "entrypoints"):
            yield key, r.props.get(key)
        yield "healthcheck.tests", _get(r.props, "healthcheck.tests")
    elif r.type == SERVICE:
        spec = _container_spec(r)
        for key, value in (("labels", r.props.get("labels")), ("taskSpec.containerSpec.labels", spec.get("labels"))):
            for i, x in enumerate(_list(value)):
                yield f"{key}[{i}].value", _get(x, "value")
        for key in ("commands", "args"):
            yield f"taskSpec.containerSpec.{key}", spec.get(key)
        yield "taskSpec.containerSpec.healthcheck.tests", _get(spec, "healthcheck.tests")
    elif r.type in COMMANDS:
        for key in ("create", "update", "delete"):
            yield key, r.props.get(key)
    elif r.type == IMAGE:
        args = _get(r.props, "build.args")
        for k, v in args.items() if isinstance(args, Mapping) else ():
            yield f"build.args.{k}", v
    elif r.type in GITHUB_VARIABLES:
        yield "value", r.props.get("value")
    elif r.type == GITHUB_FILE:
        yield "content", r.props.get("content")


def _env_items(r: Resource) -> Iterator[tuple[str, str, Any]]:
    """(input, variable name, value) of a container's `envs` or a service's env map."""
    if r.type == CONTAINER:
        for i, line in enumerate(_list(r.props.get("envs"))):
            if isinstance(line, str):
                name, _, value = line.partition("=")
                yield f"envs[{i}]", name, value
    elif r.type == SERVICE:
        env = _container_spec(r).get("env")
        for name, value in env.items() if isinstance(env, Mapping) else ():
            yield f"taskSpec.containerSpec.env.{name}", name, value


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _texts(v)
    else:
        for v in _list(value):
            yield from _texts(v)


def _holds_secret(value: Any, facts: StackFacts) -> bool:
    return any(secret in text for text in _texts(value) for secret in facts.secret_values)


def secrets_stay_secret(r: Resource, facts: StackFacts) -> list[str]:
    """No secret config value reaches a container's env, command or labels (or a build arg, a host
    script, a GitHub variable or file) as plain text.

    The analyzer cannot see whether an input is a Pulumi secret (module docstring), so the rule checks
    what it can see, the values: a label, a command, a script, a build arg, a GitHub variable is plain
    text to anyone who can list the containers, read the process table, pull the image or read the
    repository, whatever the state says, so a secret value there is refused outright. An environment
    variable may hold one only under the names through which the program hands secrets over as
    Pulumi secrets (`secretEnv`'s names, DATABASE_URL, REDIS_URL, POSTGRES_PASSWORD, REDIS_PASSWORD);
    that the program does mark those secret is the mock run's part of the proof (tests/test_policy.py).
    No message repeats the secret."""
    if not facts.secret_values:
        return []
    # `r.props` holds every secret as its bare value, unmarked: the engine sends it marked
    # (pulumi/pulumi sdk/go/common/resource/plugin/analyzer_plugin.go Analyze, KeepSecrets: true) and
    # pulumi-policy unwraps it before a validation runs (sdk/python/lib/pulumi_policy/policy.py
    # _PolicyAnalyzerServicer.Analyze -> deserialize.py _deserialize_property, proxy_secrets False).
    # `facts.secret_values` are the stack's secret config values, decrypted in PULUMI_CONFIG
    # (pkg/engine/update.go Config.Decrypt; sdk/python/cmd/pulumi-language-python/main.go RunPlugin).
    problems = [
        f"{_where(r)}: input `{key}` holds the value of a secret config key; a secret never goes in plain text there:"
        " pass it as an environment variable from `secretEnv` (stdin for a host script)"
        for key, value in _plain_places(r)
        if value is not UNKNOWN and _holds_secret(value, facts)
    ]
    for key, name, value in _env_items(r):
        if name not in facts.secret_env_names and _holds_secret(value, facts):
            problems.append(
                f"{_where(r)}: input `{key}` ({name}) holds the value of a secret config key under a plain name;"
                f" expected it only in a variable of `secretEnv` or one of {sorted(SECRET_ENV_NAMES)}, which the program keeps secret"
            )
    return problems


def _ssh_options(value: Any) -> list[str]:
    """The docker provider's sshOpts: a list, or (as provider config travels) its JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [value]
    return [str(v) for v in _list(value)]


def ssh_host_key_pinned(r: Resource, facts: StackFacts) -> list[str]:
    """A stack whose host is ssh:// pins the server's host key, in both SSH clients that reach it."""
    if r.type == DOCKER_PROVIDER:
        host = r.props.get("host")
        if not (isinstance(host, str) and host.startswith("ssh://")):
            return []
        options: dict[str, str] = {}
        for item in _ssh_options(r.props.get("sshOpts")):  # ["-o", "Key=value", ...] or ["-oKey=value", ...]
            key, sep, value = item.removeprefix("-o").strip().partition("=")
            if sep:
                options[key] = value
        strict = options.get("StrictHostKeyChecking", "")
        pinned = options.get("KnownHostsCommand") or options.get("UserKnownHostsFile", "/dev/null") != "/dev/null"
        if strict.lower() != "yes" or not pinned:
            return [
                f"{_where(r)}: input `sshOpts` has StrictHostKeyChecking={strict or '(unset)'} and"
                f" {'a' if pinned else 'no'} pinned key for {host}; expected StrictHostKeyChecking=yes and the key of"
                " `cutover:host.knownHosts` (KnownHostsCommand)"
            ]
    if r.type == REMOTE_COMMAND:
        connection = r.props.get("connection")
        if connection is UNKNOWN or not isinstance(connection, Mapping):
            return []
        host_key: Any = connection.get("hostKey")
        if host_key is not UNKNOWN and not host_key:
            return [
                f"{_where(r)}: input `connection.hostKey` is {host_key!r}; an ssh:// host's commands accept only its pinned key"
                " (`cutover:host.knownHosts`)"
            ]
    return []


def zero_downtime_replacement(r: Resource, facts: StackFacts) -> list[str]:
    """A release's containers are created beside the old ones: create-before-delete, no host port."""
    if not (r.type in (CONTAINER, SERVICE) and _is_app(r)):
        return []
    problems = []
    if r.delete_before_replace is not False:
        problems.append(
            f"{_where(r)}: option `deleteBeforeReplace` is {r.delete_before_replace!r}; the docker provider replaces containers"
            " delete-first unless the program says otherwise, so an app container sets it to false (created before the old one goes)"
        )
    if r.props.get("ports"):
        problems.append(
            f"{_where(r)}: input `ports` is {r.props.get('ports')!r}; only the proxy binds host ports (a new release could not bind them beside the old one)"
        )
    return problems


# --- advisory rules --------------------------------------------------------------------------


def infrastructure_images_pinned(r: Resource, facts: StackFacts) -> list[str]:
    """The proxy's, the keeper's and the accessories' images are pinned by digest (advisory: `caddy:2`
    takes Caddy's patch releases on a new pull, which a team may want)."""
    if r.type != REMOTE_IMAGE:
        return []
    name = r.props.get("name")
    if not isinstance(name, str) or IMAGE_ID.match(name) or DIGEST_REF.match(name):
        return []
    repo = facts.app_repository
    if repo and (name == repo or name.startswith((f"{repo}:", f"{repo}@"))):
        return []  # the app's image: app-image-by-digest
    return [f"{_where(r)}: input `name` is {name!r}, a tag; pin it as `{name}@sha256:<digest>` so every pull runs the image you reviewed"]


def app_containers_hardened(r: Resource, facts: StackFacts) -> list[str]:
    """The app runs as a user, read-only, with no capability and no new privileges (advisory: an app that
    writes to its root filesystem or needs root may turn these off on purpose)."""
    if not (r.type == CONTAINER and _is_app(r)):
        return []
    p, problems = r.props, []
    user = p.get("user")
    if _known(user) and str(user).split(":")[0] in ("", "0", "root"):
        problems.append(f"{_where(r)}: input `user` is {user!r}; expected a user other than root, like '10001:10001' (`cutover:web.user`)")
    if p.get("readOnly") is not True:
        problems.append(f"{_where(r)}: input `readOnly` is {p.get('readOnly')!r}; expected true (`cutover:web.readOnly`)")
    if "ALL" not in _list(_get(p, "capabilities.drops")):
        problems.append(f"{_where(r)}: input `capabilities.drops` is {_get(p, 'capabilities.drops')!r}; expected ['ALL']")
    if "no-new-privileges:true" not in _list(p.get("securityOpts")):
        problems.append(f"{_where(r)}: input `securityOpts` is {p.get('securityOpts')!r}; expected 'no-new-privileges:true'")
    if not p.get("memory"):
        problems.append(f"{_where(r)}: input `memory` is {p.get('memory')!r}; expected a limit (`cutover:web.memory`)")
    return problems


RULES: Final[tuple[Rule, ...]] = (
    Rule("app-image-by-digest", "Every app container runs an image by digest, never by a tag alone.", True, app_image_by_digest),
    Rule(
        "web-healthcheck",
        "Every web container has a health check, and its wait timeout leaves room for its start period and one interval.",
        True,
        web_healthcheck,
    ),
    Rule(
        "no-host-access",
        "No container is privileged, joins the host's network or namespaces, or mounts the Docker engine's socket"
        " (the proxy keeper alone mounts the socket, to start Caddy after an engine restart).",
        True,
        no_host_access,
    ),
    Rule("log-rotation", "Log rotation is set on every container.", True, log_rotation),
    Rule(
        "secrets-stay-secret",
        "No secret config value reaches a container env var, a command or a label as plain text.",
        True,
        secrets_stay_secret,
    ),
    Rule("ssh-host-key-pinned", "A stack whose host is ssh:// pins the server's host key.", True, ssh_host_key_pinned),
    Rule(
        "zero-downtime-replacement",
        "A release's containers are created beside the old ones: create-before-delete and no host port.",
        True,
        zero_downtime_replacement,
    ),
    Rule(
        "infrastructure-images-pinned",
        "The proxy's, the keeper's and the accessories' images are pinned by digest.",
        False,
        infrastructure_images_pinned,
    ),
    Rule(
        "app-containers-hardened",
        "App containers run as a user, read-only, with no capabilities, no new privileges and a memory limit.",
        False,
        app_containers_hardened,
    ),
)


def check_all(r: Resource, facts: StackFacts, rules: Sequence[Rule] = RULES) -> dict[str, list[str]]:
    """Every rule's violations for one resource (rules without any are left out)."""
    found = {rule.name: rule.check(r, facts) for rule in rules}
    return {name: problems for name, problems in found.items() if problems}
