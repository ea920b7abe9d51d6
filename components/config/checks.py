"""Reading the raw config: the value checks and the reader that records every problem.

Each check returns the parsed value or None; `_Reader` turns a None into one problem,
"<project>:<key> = <value>: expected <what>", and carries on, so that every problem is
reported at once. The keys each section knows are here too, in one place: the reader
refuses others (naming the closest), and a test checks that README documents every one.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from components.config.model import NAMESPACE, Secret
from components.config.provider_forms import duration_ns, provider_cpus

T = TypeVar("T")

DURATION = re.compile(r"^(\d+(ms|s|m|h))+$")
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
# Docker reference grammar (distribution/reference), lowercase path components only.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::\d+)?)"
REPOSITORY = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_REF = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?@sha256:[0-9a-f]{{64}}$")
# An image to pull, by tag or digest: the same grammar, which the engine applies when it pulls (distribution/reference
# regexp.go, through moby's ParseNormalizedNamed): 'Caddy:2' or 'caddy:' fails there with "invalid reference format",
# in the middle of an update, after other resources have changed.
IMAGE_REF = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MEMORY = re.compile(r"^(\d+)([mMgG])$")
# ed25519 or ECDSA only: pulumi-command offers the server exactly the pinned key's type
# (pulumi-command v1.2.1 provider/pkg/provider/remote/connection.go: HostKeyAlgorithms =
# [publicKey.Type()]), and for an RSA key that is SHA-1 `ssh-rsa`, which OpenSSH 8.8+ refuses.
KNOWN_HOSTS_LINE = re.compile(r"^\S+ (ssh-ed25519|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\n]*)?$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
ACME_DIRECTORY = re.compile(r"^https://[^\s/]+(/\S*)?$")
PEM_CERTIFICATE = re.compile(r"^\s*(-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*)+$")
SECRET_MARK = "must be stored as a secret (pulumi config set --secret ...)"  # noqa: S105 - a message, not a password


def duration_seconds(value: str) -> float:
    """'1m30s' -> 90.0; expects a value already matching DURATION."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", value))


class _Reader:
    """Reads keys from the raw config, recording every problem instead of stopping at the first."""

    def __init__(self, raw: Mapping[str, Any], secret_keys: set[str], namespace: str = NAMESPACE) -> None:
        self.raw = raw
        # the project's name, which Pulumi puts before every key of its own (`<project>:web.replicas`)
        self.ns = namespace
        self.secret_keys = secret_keys
        self.problems: list[str] = []
        # the value each key was given, as given: checks across keys show it
        self.given: dict[str, Any] = {}

    def fail(self, key: str, value: Any, expected: str) -> None:
        shown = "[secret]" if key.split(".")[0] in self.secret_keys else json.dumps(value)
        self.problems.append(f"{self.ns}:{key} = {shown}: expected {expected}")

    def missing(self, key: str, expected: str) -> None:
        self.problems.append(f"{self.ns}:{key} is missing: expected {expected}")

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
        self.given[name] = obj[sub]
        parsed = check(obj[sub])
        if parsed is None:
            self.fail(name, obj[sub], expected)
            return default
        return parsed

    def duration(
        self,
        obj: Mapping[str, Any],
        key: str,
        sub: str,
        default: str,
        *,
        zero: str | None = None,
        whole: str | None = None,
        expected: str | None = None,
    ) -> str:
        """A duration like '10s', refused (and the default returned) when it is 0 and `zero` says why 0
        misbehaves, when it is not a whole number of `whole` ('seconds' or 'minutes': the unit it is read
        in, which would cut the rest off silently), or when it is longer than Go's time.Duration holds."""
        text = self.value(obj, key, sub, default, _duration, expected or DURATION_EXPECTED)
        ns, name = duration_ns(text), f"{key}.{sub}"
        unit = {"seconds": (10**9, "s"), "minutes": (60 * 10**9, "m")}.get(whole or "")
        if ns > GO_DURATION_MAX_NS:
            self.fail(
                name, text, f"at most {GO_DURATION_MAX}, the longest duration Go holds (Docker and its provider read durations in Go)"
            )
        elif ns == 0 and zero:
            self.fail(name, text, zero)
        elif unit and ns % unit[0]:
            self.fail(
                name, text, f"a whole number of {whole}: it is read in whole {whole}, and {text} would be cut to {ns // unit[0]}{unit[1]}"
            )
        else:
            return text
        return default

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
            self.problems.append(f"{self.ns}:{key} is set in plain text: it {SECRET_MARK}")
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
# Go's time.Duration holds at most 2^63-1 ns. The docker provider parses the health check's durations with
# time.ParseDuration, which refuses longer ones (go/src/time/format.go ParseDuration: "invalid duration"; kreuzwerker
# v4.5.0 internal/provider/validators.go validateDurationGeq0), and turns whole seconds into a time.Duration by
# multiplying, which wraps around beyond it (resource_docker_container_funcs.go:614, wait_timeout).
GO_DURATION_MAX_NS = 2**63 - 1
GO_DURATION_MAX = "2562047h"

# The keys of each object, in one place: the parser refuses others (naming the closest),
# and a test checks that README's table documents every one.
SECTION_KEYS: dict[str, frozenset[str]] = {
    "image": frozenset({"repository", "tag", "context", "dockerfile", "platform", "buildArgs", "extraTags", "push", "cacheFromRegistry", "registryUsername", "ref", "buildCacheKept"}),
    "host": frozenset({"url", "knownHosts"}),
    "web": frozenset({"enabled", "port", "replicas", "env", "memory", "cpus", "stopTimeout", "waitTimeout", "user", "readOnly", "tmpfs", "command"}),
    # each role under `roles.<name>`
    "roles.<name>": frozenset({"command", "replicas", "overlap", "env", "memory", "cpus", "stopTimeout", "waitTimeout", "healthcheck"}),
    "roles.<name>.healthcheck": frozenset({"command", "interval", "timeout", "retries", "startPeriod"}),
    "healthcheck": frozenset({"path", "port", "interval", "timeout", "retries", "startPeriod", "command"}),
    "proxy": frozenset({"image", "keeperImage", "httpPort", "httpsPort", "domain", "email", "drain", "upstreamTimeout", "bindAddress", "acmeCA", "acmeCARoot"}),
    "postgres": frozenset({"enabled", "image", "database", "user", "backupsKept"}),
    "redis": frozenset({"enabled", "image"}),
    "migrations": frozenset({"command"}),
    "releases": frozenset({"historySize", "promoteFrom", "probation", "probationErrorRate", "canary", "imagesKept"}),
    "verify": frozenset({"enabled", "expectVersion", "attempts", "interval"}),
    "cluster": frozenset({"enabled", "placement", "spread", "convergeTimeout"}),
    "github": frozenset({"enabled", "owner", "repository", "environment", "manageRepositoryFiles", "branch", "reviewers", "waitTimer", "protectBranch", "publicUrl", "variables", "stacks", "adminBypass", "filesBranch"}),
}  # fmt: skip
# Secrets live in keys of their own, so that marking one secret never hides the rest.
SECRET_KEYS = frozenset(
    {"sshPrivateKey", "registryPassword", "secretEnv", "postgresPassword", "redisPassword", "githubSecrets", "notifyWebhook"}
)
KNOWN_KEYS = {"appName", "roles", *(k for k in SECTION_KEYS if "." not in k), *SECRET_KEYS}
ROLE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
# names cutover gives things of its own on the host and in Pulumi
RESERVED_ROLES = frozenset({"web", "proxy", "edge", "migration", "migrate", "accessories", "postgres", "redis", "switch", "host", "app"})


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


def caddy_too_old(image: str) -> bool:
    """True for a Caddy image pinned to a release before 2.8, like 'caddy:2.7.6-alpine' (other images pass)."""
    m = re.search(r"(?:^|/)caddy:(\d+)\.(\d+)(?:[.-]|$)", image)
    return m is not None and (int(m[1]), int(m[2])) < (2, 8)
