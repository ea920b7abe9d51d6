"""Apply the program's registrations to a real Docker engine, the way `pulumi up` would.

The Pulumi CLI and provider plugins cannot run here, so this module plays the
engine and the two providers (pulumi-docker, pulumi-command) for exactly the
resources and inputs the program registers:

* Desired state: `tests.harness.run_program` runs `__main__.py` under mocks and
  captures every registration (type, name, URN, inputs, dependencies, options).
* Steps, as the Pulumi engine takes them: a registration runs once everything it
  depends on (explicit dependencies, property dependencies, parent, provider)
  has finished, so independent resources run in parallel, as Pulumi runs them.
  A URN not in the state is created; unchanged inputs are left alone; a change
  to an input the provider schema marks `willReplaceOnChanges` (for commands: a
  change of `triggers`) replaces the resource, create-before-delete unless
  `deleteBeforeReplace`; any other change is an in-place update.
* Deletions (replaced resources, resources no longer registered, and resources
  left pending deletion by an earlier failed update) run at the end of a
  successful update, dependents first, independent ones in parallel.
* A failed step stops the update: steps already running finish, nothing new
  starts, nothing is deleted, the stack outputs stay as they were. A container
  that was created but never became healthy stays in the state (Pulumi records
  it with its initialization error) and the resource it was replacing becomes
  pending deletion, exactly as Pulumi's CreateReplacementStep does; both go
  away at the end of the next successful update.
* Mock outputs (container names like `web-0-3b9444b`, fake image IDs and
  digests) are translated to the real values as they become known, so later
  inputs (the Caddyfile, the image a container runs) carry the real ones.

Providers:
* `pulumi:providers:docker`: `ssh://` hosts are reached the way the provider
  reaches them: `ssh <sshOpts...> -o ConnectTimeout=30 -T -l USER -p PORT --
  HOST docker system dial-stdio` (docker/cli connhelper with the provider's
  ssh_opts in front), and the Docker Engine API is spoken over that stream.
  The API, not the docker CLI, creates containers: the CLI's --health-cmd can
  only store the shell form (CMD-SHELL), while the program declares the exec
  form (["CMD", "python", "-c", ...]); the API stores exactly what the provider
  sends. `unix://` hosts use the socket.
* `docker:index/image:Image` runs on the default provider (the program gives it
  no provider): the local engine, with the docker CLI: `docker login` into a
  private DOCKER_CONFIG, a BuildKit build like the provider's (`docker buildx
  build --load`, or DOCKER_BUILDKIT=1 with a CLI that has BuildKit built in),
  the cache images pulled first and passed as --cache-from, then `docker push`;
  the digest the push reports becomes `repoDigest`. Its Delete does nothing,
  like the provider's.
* `command:remote:Command` runs the script over system ssh with the
  connection's key and the pinned host key (StrictHostKeyChecking, no user
  ssh config), stdin attached; `command:local:Command` runs the interpreter.

Any input this module does not translate is refused with an error, so a new
program input can never be silently ignored here.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import copy
import dataclasses
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.harness import ROOT, ProgramFailedError, ProgramRun, Registration, run_program
from tests.schema import load_schema

API_VERSION = "v1.41"  # Docker 20.10
HEALTH_POLL_S = 1.0  # the provider inspects the container once a second while it waits for "healthy"
PROJECT = "cutover"


class EngineError(RuntimeError):
    """Something this engine cannot do, or a real operation that failed."""


class StepError(EngineError):
    """A resource operation failed. `partial` is set when the resource exists anyway
    (Pulumi keeps such a resource in the state with its initialization error)."""

    def __init__(self, message: str, partial: Applied | None = None) -> None:
        super().__init__(message)
        self.partial = partial


class UpdateFailedError(EngineError):
    """`pulumi up` failed: what failed and why, plus the steps that did run."""

    def __init__(self, errors: list[tuple[str, str]], result: ApplyResult) -> None:
        self.errors = errors
        self.result = result
        lines = [f"  {name}: {message}" for name, message in errors]
        super().__init__("update failed:\n" + "\n".join(lines))


# --------------------------------------------------------------------------- state


@dataclasses.dataclass
class Applied:
    """A resource as it exists: the inputs it was applied with and its real outputs."""

    urn: str
    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    deps: set[str]
    options: dict[str, Any]
    provider: str  # URN of the explicit provider, "" for the default one
    tainted: bool = False  # created, but its creation failed (Pulumi's init errors)


@dataclasses.dataclass
class Op:
    """One step of an update, with monotonic start and end times."""

    urn: str
    name: str
    type: str
    action: str  # create, update, replace, same, delete, delete-replaced, delete-pending, create-failed
    start: float
    end: float = 0.0
    ok: bool = True
    detail: str = ""


@dataclasses.dataclass
class ApplyResult:
    started: float
    ended: float = 0.0
    ops: list[Op] = dataclasses.field(default_factory=list)
    outputs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.ended - self.started

    def op(self, name: str, action: str | None = None) -> Op | None:
        """The last step on the resource called `name` (optionally of one action)."""
        found = [o for o in self.ops if o.name == name and (action is None or o.action == action)]
        return found[-1] if found else None

    def step(self, name: str) -> Op | None:
        """The create, update or replace step of `name` in this update (not a deletion of its old self)."""
        found = [o for o in self.ops if o.name == name and o.action in ("create", "update", "replace")]
        return found[-1] if found else None

    def actions(self, type_: str | None = None) -> list[tuple[str, str]]:
        return [(o.name, o.action) for o in self.ops if type_ is None or o.type == type_]

    def ran(self, name: str) -> bool:
        """True when a step that changes something ran on `name` (not just 'same')."""
        return any(o.name == name and o.action != "same" for o in self.ops)


# --------------------------------------------------------------------------- small helpers

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def go_duration_ns(value: str) -> int:
    """Go's time.ParseDuration ('1m30s', '500ms'), as the provider parses healthcheck durations."""
    value = value.strip()
    if value in ("", "0"):
        return 0
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise EngineError(f"not a Go duration: {value!r}")
    return int(sum(float(n) * _UNITS[u] for n, u in parts))


def _int(v: Any) -> int:
    return int(v) if v is not None else 0


def _check_keys(what: str, value: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise EngineError(
            f"{what}: input(s) {unknown} are not translated by tests/e2e/engine.py; teach it what the provider does with them"
        )


def _provider_value(v: Any) -> Any:
    """Provider inputs travel JSON-encoded when they are not strings."""
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def translate(value: Any, mapping: Mapping[str, str]) -> Any:
    """Replace every mock value (as a substring) with its real value, recursively."""
    if not mapping:
        return value
    if isinstance(value, str):
        for mock in sorted(mapping, key=len, reverse=True):
            if mock in value:
                value = value.replace(mock, mapping[mock])
        return value
    if isinstance(value, dict):
        return {k: translate(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [translate(v, mapping) for v in value]
    return value


def _normal(value: Any) -> Any:
    """Inputs compared the way the provider compares them (1 == 1.0)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> set[str]:
    a, b = _normal(dict(old)), _normal(dict(new))
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def replace_keys(type_: str) -> frozenset[str]:
    """Inputs whose change replaces the resource, from the provider's schema."""
    with _SCHEMA_LOCK:
        if type_ not in _REPLACE_KEYS:
            schema = load_schema(type_.split(":")[0])
            props = schema["resources"][type_]["inputProperties"]
            _REPLACE_KEYS[type_] = frozenset(k for k, v in props.items() if v.get("willReplaceOnChanges"))
        return _REPLACE_KEYS[type_]


_SCHEMA_LOCK = threading.Lock()
_REPLACE_KEYS: dict[str, frozenset[str]] = {}


def _run(
    argv: list[str], *, input: str | None = None, env: Mapping[str, str] | None = None, timeout: float = 900, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    try:
        return subprocess.run(argv, input=input, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"timed out after {timeout}s: {shlex.join(argv[:6])} ...") from exc


_BUILDKIT: list[tuple[str, list[str], dict[str, str]]] = []


def buildkit_cli() -> tuple[str, list[str], dict[str, str]]:
    """How to build with BuildKit, as the provider does: `docker buildx build --load`, or a CLI
    with BuildKit built in (before 23.0) and DOCKER_BUILDKIT=1; the classic builder as a last resort."""
    if _BUILDKIT:
        return _BUILDKIT[0]
    choice: tuple[str, list[str], dict[str, str]] | None = None
    candidates = [c for c in (shutil.which("docker"), "/usr/bin/docker") if c and os.path.exists(c)]
    for cli in candidates:
        if _run([cli, "buildx", "version"], timeout=30).returncode == 0:
            choice = (cli, ["buildx", "build", "--load"], {})
            break
    if choice is None:
        for cli in candidates:
            version = _run([cli, "version", "--format", "{{.Client.Version}}"], timeout=30).stdout.strip()
            m = re.match(r"(\d+)\.", version)
            if m and int(m[1]) < 23:
                choice = (cli, ["build"], {"DOCKER_BUILDKIT": "1"})
                break
    _BUILDKIT.append(choice or ("docker", ["build"], {"DOCKER_BUILDKIT": "0"}))
    return _BUILDKIT[0]


# --------------------------------------------------------------------------- Docker Engine API


class DockerAPI:
    """The Docker Engine API over the provider's connection.

    ssh://user@host:port: the docker/cli connection helper's command, with the
    provider's ssh options first, exactly as the provider builds it:
        ssh <sshOpts...> -o ConnectTimeout=30 -T -l user -p port -- host docker system dial-stdio
    unix:///path: the socket.
    One request per connection (Connection: close), as simple as it is robust.
    """

    def __init__(self, url: str, ssh_opts: list[str] | None = None) -> None:
        self.url = url
        self.argv: list[str] | None = None
        self.socket_path: str | None = None
        if url.startswith("ssh://"):
            m = re.match(r"^ssh://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/]+)(?::(?P<port>\d+))?/?$", url)
            if not m:
                raise EngineError(f"cannot parse docker host {url!r}")
            argv = ["ssh", *(ssh_opts or []), "-o", "ConnectTimeout=30", "-T"]
            if m["user"]:
                argv += ["-l", m["user"]]
            if m["port"]:
                argv += ["-p", m["port"]]
            self.argv = [*argv, "--", m["host"].strip("[]"), "docker", "system", "dial-stdio"]
        elif url.startswith("unix://"):
            self.socket_path = url[len("unix://") :]
        else:
            raise EngineError(f"docker host {url!r}: only ssh:// and unix:// are supported here")

    def _open(self, timeout: float) -> tuple[socket.socket, subprocess.Popen[bytes] | None]:
        if self.socket_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(self.socket_path)
            return sock, None
        assert self.argv is not None
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(self.argv, stdin=theirs, stdout=theirs, stderr=subprocess.PIPE)
        theirs.close()
        ours.settimeout(timeout)
        return ours, proc

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> tuple[int, Any]:
        """(status, decoded JSON body, or text; a JSON-lines stream becomes a list)."""
        url = f"/{API_VERSION}{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Host": "docker", "Connection": "close", **(headers or {})}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        sock, proc = self._open(timeout)
        conn = http.client.HTTPConnection("docker", timeout=timeout)
        conn.sock = sock
        try:
            conn.request(method, url, body=data, headers=hdrs)
            response = conn.getresponse()
            raw = response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            stderr = ""
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.kill()
                    stderr = proc.communicate(timeout=5)[1].decode(errors="replace")
            raise EngineError(f"docker API {method} {path} via {self.url}: {type(exc).__name__}: {exc}; {stderr.strip()[-800:]}") from exc
        finally:
            conn.close()
            sock.close()
            if proc is not None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
                if proc.stderr:
                    proc.stderr.close()
        text = raw.decode(errors="replace")
        if not text.strip():
            return status, None
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            lines = []
            for line in text.splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    lines.append(json.loads(line))
            return status, lines if lines else text

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any) -> Any:
        status, data = self.request(method, path, body, **kwargs)
        if status not in ok:
            message = data.get("message") if isinstance(data, dict) else data
            raise EngineError(f"docker API {method} {path}: HTTP {status}: {message}")
        return data

    # a few calls used in many places
    def inspect_container(self, ref: str) -> dict[str, Any] | None:
        status, data = self.request("GET", f"/containers/{urllib.parse.quote(ref, safe='')}/json")
        if status == 404:
            return None
        if status != 200:
            raise EngineError(f"inspect container {ref}: HTTP {status}: {data}")
        return data

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        status, data = self.request("GET", f"/images/{urllib.parse.quote(ref, safe='/:@')}/json")
        if status == 404:
            return None
        if status != 200:
            raise EngineError(f"inspect image {ref}: HTTP {status}: {data}")
        return data


# --------------------------------------------------------------------------- the engine


@dataclasses.dataclass
class _Provider:
    urn: str
    api: DockerAPI
    registry_auth: dict[str, dict[str, str]]  # address -> {"username", "password"}


class Engine:
    """Pulumi's engine, for this program's resources, against a real Docker host.

    `apply(run)` is one `pulumi up`; `destroy()` is `pulumi destroy`. The state
    (what exists, with the inputs it was applied with) lives in memory.
    `before_step(registration, action)` is called before each step runs (tests
    use it to act at a precise moment, e.g. just before the traffic switch).
    """

    def __init__(self, *, workdir: Path | None = None, parallel: int = 16, log: Callable[[str], None] | None = None) -> None:
        self.state: dict[str, Applied] = {}
        self.pending_deletes: list[Applied] = []
        self.parallel = parallel
        self.before_step: Callable[[Registration, str], None] | None = None
        self._log = log or (lambda msg: None)
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="cutover-engine-")) if workdir is None else workdir
        os.chmod(self.workdir, 0o700)
        self._providers: dict[str, _Provider] = {}
        self._local_api = DockerAPI(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
        self._lock = threading.Lock()
        self.updates: list[ApplyResult] = []

    def close(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ one `pulumi up`

    def apply(self, run: ProgramRun) -> ApplyResult:
        result = ApplyResult(started=time.monotonic())
        self.updates.append(result)
        mapping: dict[str, str] = {}
        registered = {r.urn for r in run.registrations}
        done: set[str] = set()
        replaced: list[Applied] = []
        errors: list[tuple[str, str]] = []
        waiting = list(run.registrations)
        running: dict[concurrent.futures.Future[None], Registration] = {}

        def deps_of(reg: Registration) -> set[str]:
            deps = set(reg.dependencies)
            for v in reg.property_dependencies.values():
                deps.update(v)
            if reg.parent:
                deps.add(reg.parent)
            if reg.provider:
                deps.add(reg.provider.rsplit("::", 1)[0])
            return {d for d in deps if d in registered}

        with concurrent.futures.ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="step") as pool:
            while waiting or running:
                if not errors:
                    for reg in list(waiting):
                        if deps_of(reg) <= done:
                            waiting.remove(reg)
                            running[pool.submit(self._step, reg, mapping, replaced, result)] = reg
                else:
                    waiting.clear()
                if not running:
                    if waiting:
                        names = [r.name for r in waiting]
                        raise EngineError(f"no registration can run (a dependency is never registered): {names}")
                    break
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for fut in finished:
                    reg = running.pop(fut)
                    try:
                        fut.result()
                        done.add(reg.urn)
                    except Exception as exc:  # every failure is reported, like Pulumi's diagnostics
                        errors.append((f"{reg.name} ({reg.type})", str(exc)))
        if errors:
            # Pulumi: replaced resources of a failed update stay, pending deletion by the next one.
            self.pending_deletes.extend(replaced)
            result.ended = time.monotonic()
            self._log(f"update failed after {result.duration:.1f}s: {errors}")
            raise UpdateFailedError(errors, result)

        gone = [a for urn, a in self.state.items() if urn not in registered]
        for a in gone:
            del self.state[a.urn]
        to_delete = [(a, "delete-replaced") for a in replaced]
        to_delete += [(a, "delete-pending") for a in self.pending_deletes]
        to_delete += [(a, "delete") for a in gone]
        self.pending_deletes = []
        self._delete_all(to_delete, result)
        result.outputs = translate(copy.deepcopy(run.outputs), mapping)
        result.ended = time.monotonic()
        steps = ", ".join(f"{o.name} {o.action} {o.end - o.start:.1f}s" for o in result.ops if o.action != "same")
        self._log(f"update done in {result.duration:.1f}s: {steps}")
        return result

    def destroy(self) -> ApplyResult:
        """`pulumi destroy`: every resource, dependents first (retainOnDelete honoured)."""
        result = ApplyResult(started=time.monotonic())
        items = [(a, "delete") for a in self.state.values()] + [(a, "delete-pending") for a in self.pending_deletes]
        self.state = {}
        self.pending_deletes = []
        self._delete_all(items, result)
        result.ended = time.monotonic()
        return result

    def _delete_all(self, items: list[tuple[Applied, str]], result: ApplyResult) -> None:
        """Dependents first; everything at the same depth in parallel (Pulumi's delete antichains)."""
        level: dict[int, int] = {}

        def depth(i: int, seen: frozenset[int] = frozenset()) -> int:
            if i in level:
                return level[i]
            a = items[i][0]
            dependents = [
                j
                for j, (b, _) in enumerate(items)
                if j != i and j not in seen and b.urn != a.urn and (a.urn in b.deps or a.urn == b.provider)
            ]
            level[i] = 1 + max((depth(j, seen | {i}) for j in dependents), default=-1)
            return level[i]

        for i in range(len(items)):
            depth(i)
        errors: list[tuple[str, str]] = []
        for lv in sorted(set(level.values())):
            batch = [items[i] for i in range(len(items)) if level[i] == lv]
            with concurrent.futures.ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="delete") as pool:
                futures = {pool.submit(self._delete_one, a, action, result): a for a, action in batch}
                for fut in concurrent.futures.as_completed(futures):
                    try:
                        fut.result()
                    except Exception as exc:
                        a = futures[fut]
                        errors.append((f"{a.name} ({a.type})", f"delete failed: {exc}"))
                        self.pending_deletes.append(a)
            if errors:
                # what was not attempted stays in the state, pending deletion by the next update
                self.pending_deletes.extend(items[i][0] for i in range(len(items)) if level[i] > lv)
                result.ended = time.monotonic()
                raise UpdateFailedError(errors, result)

    def _delete_one(self, a: Applied, action: str, result: ApplyResult) -> None:
        op = Op(a.urn, a.name, a.type, action, time.monotonic())
        result.ops.append(op)
        try:
            if a.options.get("retainOnDelete"):
                op.detail = "retained (retainOnDelete)"
            else:
                self._delete(a)
        except Exception as exc:
            op.ok, op.detail = False, str(exc)
            raise
        finally:
            op.end = time.monotonic()

    # ------------------------------------------------------------------ one step

    def _step(self, reg: Registration, mapping: dict[str, str], replaced: list[Applied], result: ApplyResult) -> None:
        if not reg.custom:
            return  # component resources have nothing to do
        with self._lock:
            inputs = translate(copy.deepcopy(reg.inputs), mapping)
        old = self.state.get(reg.urn)
        deps = set(reg.dependencies) | {d for v in reg.property_dependencies.values() for d in v}
        provider = reg.provider.rsplit("::", 1)[0] if reg.provider else ""
        new = Applied(reg.urn, reg.type, reg.name, "", inputs, {}, deps, dict(reg.options), provider)
        if old is None:
            action = "create"
        else:
            keys = changed_keys(old.inputs, inputs)
            if old.tainted:
                action = "replace"
            elif not keys:
                action = "same"
            elif self._replaces(reg.type, keys):
                action = "replace"
            else:
                action = "update"
        if self.before_step is not None:
            self.before_step(reg, action)
        op = Op(reg.urn, reg.name, reg.type, action, time.monotonic())
        result.ops.append(op)
        try:
            if action == "same":
                assert old is not None
                new.id, new.outputs = old.id, old.outputs
                if reg.type.startswith("pulumi:providers:"):
                    self._provider(new)
            elif action == "update":
                assert old is not None
                new.id = old.id
                new.outputs = self._update(reg, old, new)
            elif action == "replace" and reg.options.get("deleteBeforeReplace"):
                assert old is not None
                self._delete(old)
                with self._lock:
                    del self.state[reg.urn]
                self._create(reg, new)
            elif action == "replace":
                assert old is not None
                self._create(reg, new)
                replaced.append(old)
            else:
                self._create(reg, new)
        except StepError as exc:
            op.ok, op.detail, op.end = False, str(exc), time.monotonic()
            if exc.partial is not None:
                exc.partial.tainted = True
                with self._lock:
                    self.state[reg.urn] = exc.partial
                    if old is not None and action == "replace" and not reg.options.get("deleteBeforeReplace"):
                        self.pending_deletes.append(old)
            raise
        except Exception as exc:
            op.ok, op.detail, op.end = False, str(exc), time.monotonic()
            raise
        op.end = time.monotonic()
        with self._lock:
            self.state[reg.urn] = new
            for key, mock in reg.outputs.items():
                real = new.outputs.get(key)
                if isinstance(mock, str) and isinstance(real, str) and len(mock) >= 6 and mock != real and mock != reg.inputs.get(key):
                    if mapping.get(mock, real) != real:
                        raise EngineError(f"mock value {mock!r} stands for two real values: {mapping[mock]!r} and {real!r}")
                    mapping[mock] = real

    @staticmethod
    def _replaces(type_: str, keys: set[str]) -> bool:
        if type_.startswith("command:"):
            return "triggers" in keys
        if type_.startswith("pulumi:providers:"):
            return bool(keys & {"host"})
        return bool(keys & replace_keys(type_))

    def _create(self, reg: Registration, new: Applied) -> None:
        kind = reg.type
        if kind == "pulumi:providers:docker":
            new.id, new.outputs = f"{reg.name}-{secrets.token_hex(4)}", dict(new.inputs)
            self._provider(new)
        elif kind == "docker:index/image:Image":
            new.id, new.outputs = self._image_build(new)
        elif kind == "docker:index/remoteImage:RemoteImage":
            new.id, new.outputs = self._remote_image(new)
        elif kind == "docker:index/network:Network":
            new.id, new.outputs = self._network_create(new)
        elif kind == "docker:index/volume:Volume":
            new.id, new.outputs = self._volume_create(new)
        elif kind == "docker:index/container:Container":
            new.id, new.outputs = self._container_create(reg, new)
        elif kind in ("command:remote:Command", "command:local:Command"):
            new.id = f"{reg.name}-{secrets.token_hex(4)}"
            new.outputs = self._command(new, "create")
        else:
            raise EngineError(f"{reg.name}: resource type {kind} is not implemented by tests/e2e/engine.py")

    def _update(self, reg: Registration, old: Applied, new: Applied) -> dict[str, Any]:
        kind = reg.type
        if kind == "pulumi:providers:docker":
            outputs = dict(new.inputs)
            self._provider(new)
            return outputs
        if kind == "docker:index/image:Image":
            return self._image_build(new)[1]  # the provider's Update builds and pushes again
        if kind == "docker:index/remoteImage:RemoteImage":
            return self._remote_image(new)[1]
        if kind == "docker:index/container:Container":
            return self._container_update(old, new)
        if kind in ("command:remote:Command", "command:local:Command"):
            # pulumi-command: with no `update` script, `create` runs again on any change
            return self._command(new, "update" if new.inputs.get("update") else "create")
        if kind == "docker:index/volume:Volume":
            _check_keys(f"{reg.name} (Volume)", new.inputs, {"name", "labels", "driver", "driverOpts"})
            return dict(old.outputs)
        raise EngineError(f"{reg.name}: in-place update of {kind} ({sorted(changed_keys(old.inputs, new.inputs))}) is not implemented")

    def _delete(self, a: Applied) -> None:
        kind = a.type
        if kind in ("pulumi:providers:docker", "docker:index/image:Image"):
            return  # the Image provider's Delete leaves the image and the registry alone
        if kind == "docker:index/remoteImage:RemoteImage":
            if not a.inputs.get("keepLocally"):
                api = self._api(a)
                with contextlib.suppress(EngineError):
                    api.call("DELETE", f"/images/{urllib.parse.quote(a.outputs.get('imageId', a.inputs['name']), safe='/:@')}")
            return
        if kind == "docker:index/network:Network":
            self._api(a).call("DELETE", f"/networks/{a.id}", ok=(200, 204, 404))
            return
        if kind == "docker:index/volume:Volume":
            self._api(a).call("DELETE", f"/volumes/{a.id}", ok=(204, 404))
            return
        if kind == "docker:index/container:Container":
            self._container_delete(a)
            return
        if kind in ("command:remote:Command", "command:local:Command"):
            if a.inputs.get("delete"):
                self._command(a, "delete")
            return
        raise EngineError(f"{a.name}: deleting {kind} is not implemented")

    # ------------------------------------------------------------------ providers

    def _provider(self, a: Applied) -> _Provider:
        _check_keys(f"{a.name} (docker provider)", a.inputs, {"host", "sshOpts", "registryAuth", "version"})
        host = a.inputs.get("host") or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        ssh_opts = _provider_value(a.inputs.get("sshOpts")) or []
        auth: dict[str, dict[str, str]] = {}
        for entry in _provider_value(a.inputs.get("registryAuth")) or []:
            _check_keys(f"{a.name} registryAuth", entry, {"address", "username", "password"})
            auth[entry["address"]] = {"username": entry.get("username", ""), "password": entry.get("password", "")}
        provider = _Provider(a.urn, DockerAPI(host, ssh_opts), auth)
        with self._lock:
            self._providers[a.urn] = provider
        return provider

    def _api(self, a: Applied) -> DockerAPI:
        if not a.provider:
            return self._local_api
        provider = self._providers.get(a.provider)
        if provider is None:
            owner = self.state.get(a.provider)
            if owner is None:
                raise EngineError(f"{a.name}: its provider {a.provider} is not in the state")
            provider = self._provider(owner)
        return provider.api

    def _registry_auth(self, a: Applied, ref: str) -> str | None:
        provider = self._providers.get(a.provider) if a.provider else None
        if provider is None:
            return None
        registry = ref.split("/", 1)[0] if "/" in ref and ("." in ref.split("/", 1)[0] or ":" in ref.split("/", 1)[0]) else "docker.io"
        creds = provider.registry_auth.get(registry)
        if not creds:
            return None
        blob = json.dumps({"username": creds["username"], "password": creds["password"], "serveraddress": registry})
        return base64.urlsafe_b64encode(blob.encode()).decode()

    # ------------------------------------------------------------------ docker:index/image:Image (default provider: the local engine)

    def _image_build(self, a: Applied) -> tuple[str, dict[str, Any]]:
        inp = a.inputs
        _check_keys(f"{a.name} (Image)", inp, {"imageName", "build", "registry", "skipPush", "buildOnPreview"})
        build = inp.get("build") or {}
        _check_keys(f"{a.name} (Image.build)", build, {"context", "dockerfile", "platform", "args", "cacheFrom"})
        image_name = inp["imageName"]
        context = (ROOT / build.get("context", ".")).resolve()
        dockerfile = (ROOT / build["dockerfile"]).resolve() if build.get("dockerfile") else context / "Dockerfile"
        config_dir = Path(tempfile.mkdtemp(prefix="docker-config-", dir=self.workdir))
        (config_dir / "config.json").write_text("{}\n")
        env = {"DOCKER_CONFIG": str(config_dir)}
        try:
            registry = inp.get("registry") or {}
            if registry.get("server") and registry.get("password"):
                _check_keys(f"{a.name} (Image.registry)", registry, {"server", "username", "password"})
                login = _run(
                    ["docker", "login", "--username", registry.get("username", ""), "--password-stdin", registry["server"]],
                    input=registry["password"],
                    env=env,
                    timeout=60,
                )
                if login.returncode != 0:
                    raise StepError(f"docker login {registry['server']} failed: {login.stderr.strip()[-800:]}")
            cli, build_cmd, build_env = buildkit_cli()
            env = {**env, **build_env}
            argv = [cli, *build_cmd, "-f", str(dockerfile), "-t", image_name]
            if build.get("platform"):
                argv += ["--platform", build["platform"]]
            for key, value in (build.get("args") or {}).items():
                argv += ["--build-arg", f"{key}={value}"]
            cache = build.get("cacheFrom") or {}
            _check_keys(f"{a.name} (Image.build.cacheFrom)", cache, {"images"})
            for ref in cache.get("images") or []:
                # the provider pulls cache images first and carries on when one is missing
                _run(["docker", "pull", "--quiet", ref], env=env, timeout=300)
                if build_env.get("DOCKER_BUILDKIT") == "1" or build_cmd[0] == "buildx":
                    # (the classic builder would use ONLY these as cache and ignore the local one)
                    argv += ["--cache-from", ref]
            argv.append(str(context))
            built = _run(argv, env=env, timeout=1200)
            if built.returncode != 0:
                raise StepError(f"docker build of {image_name} failed:\n{built.stdout[-1500:]}\n{built.stderr[-2500:]}")
            image_id = json.loads(_run(["docker", "image", "inspect", "--format", "{{json .Id}}", image_name], env=env).stdout)
            outputs: dict[str, Any] = {"imageName": image_name, "repoDigest": "", "imageId": image_id}
            if not inp.get("skipPush"):
                pushed = _run(["docker", "push", image_name], env=env, timeout=900)
                if pushed.returncode != 0:
                    raise StepError(f"docker push {image_name} failed: {pushed.stdout[-1000:]}{pushed.stderr[-1500:]}")
                m = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed.stdout)
                if not m:
                    raise StepError(f"docker push {image_name}: no digest in its output: {pushed.stdout[-800:]}")
                outputs["repoDigest"] = f"{image_name.rsplit(':', 1)[0]}@{m[1]}"
            return image_name, outputs
        finally:
            shutil.rmtree(config_dir, ignore_errors=True)

    # ------------------------------------------------------------------ docker:index/remoteImage:RemoteImage

    def _remote_image(self, a: Applied) -> tuple[str, dict[str, Any]]:
        inp = a.inputs
        _check_keys(f"{a.name} (RemoteImage)", inp, {"name", "keepLocally", "platform"})
        api = self._api(a)
        name = inp["name"]
        found = api.inspect_image(name)
        if found is None:
            # like the provider: pull only when the host does not have it, with the provider's registryAuth
            if "@" in name:
                repo, tag = name.split("@", 1)
            elif ":" in name.rsplit("/", 1)[-1]:
                repo, tag = name.rsplit(":", 1)
            else:
                repo, tag = name, "latest"
            headers = {}
            auth = self._registry_auth(a, name)
            if auth:
                headers["X-Registry-Auth"] = auth
            status, stream = api.request(
                "POST",
                "/images/create",
                query={"fromImage": repo, "tag": tag, "platform": inp.get("platform")},
                headers=headers,
                timeout=900,
            )
            problems = [
                e.get("error") or e.get("message")
                for e in (stream if isinstance(stream, list) else [stream])
                if isinstance(e, dict) and (e.get("error") or (status >= 400 and e.get("message")))
            ]
            if status >= 400 or problems:
                raise StepError(f"unable to pull image {name}: HTTP {status}: {'; '.join(map(str, problems)) or stream}")
            found = api.inspect_image(name)
            if found is None:
                raise StepError(f"image {name} still missing after the pull")
        digests = found.get("RepoDigests") or []
        repo_digest = name if "@sha256:" in name else next((d for d in digests if d.startswith(name.rsplit(":", 1)[0] + "@")), "")
        return f"{found['Id']}{name}", {"name": name, "imageId": found["Id"], "repoDigest": repo_digest}

    # ------------------------------------------------------------------ docker:index/network:Network, docker:index/volume:Volume

    def _network_create(self, a: Applied) -> tuple[str, dict[str, Any]]:
        inp = a.inputs
        _check_keys(f"{a.name} (Network)", inp, {"name", "driver", "labels", "internal", "attachable", "options"})
        body = {
            "Name": inp["name"],
            "CheckDuplicate": True,
            "Driver": inp.get("driver") or "bridge",
            "Internal": bool(inp.get("internal")),
            "Attachable": bool(inp.get("attachable")),
            "Options": inp.get("options") or {},
            "Labels": {entry["label"]: entry["value"] for entry in inp.get("labels") or []},
        }
        created = self._api(a).call("POST", "/networks/create", body)
        return created["Id"], {"name": inp["name"], "id": created["Id"]}

    def _volume_create(self, a: Applied) -> tuple[str, dict[str, Any]]:
        inp = a.inputs
        _check_keys(f"{a.name} (Volume)", inp, {"name", "labels", "driver", "driverOpts"})
        body = {
            "Name": inp["name"],
            "Driver": inp.get("driver") or "local",
            "DriverOpts": inp.get("driverOpts") or {},
            "Labels": {entry["label"]: entry["value"] for entry in inp.get("labels") or []},
        }
        created = self._api(a).call("POST", "/volumes/create", body)
        return created["Name"], {"name": created["Name"], "mountpoint": created.get("Mountpoint", "")}

    # ------------------------------------------------------------------ docker:index/container:Container

    CONTAINER_INPUTS = frozenset(
        {
            "image", "name", "user", "readOnly", "tmpfs", "memory", "cpus", "stopSignal", "stopTimeout",
            "destroyGraceSeconds", "healthcheck", "wait", "waitTimeout", "mustRun", "networksAdvanced",
            "labels", "envs", "command", "capabilities", "securityOpts", "restart", "logDriver", "logOpts",
            "init", "ports", "volumes", "shmSize",
        }
    )  # fmt: skip

    @classmethod
    def container_create_body(cls, name: str, inp: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, list[str]]]]:
        """The Engine API ContainerCreate body the provider sends, and the networks to connect after
        the first. Raises for any input not translated here."""
        _check_keys(f"{name} (Container)", inp, set(cls.CONTAINER_INPUTS))
        config: dict[str, Any] = {"Image": inp["image"], "Env": list(inp.get("envs") or [])}
        host: dict[str, Any] = {}
        config["Labels"] = {entry["label"]: entry["value"] for entry in inp.get("labels") or []}
        if inp.get("command"):
            config["Cmd"] = list(inp["command"])
        if inp.get("user"):
            config["User"] = inp["user"]
        if inp.get("stopSignal"):
            config["StopSignal"] = inp["stopSignal"]
        if inp.get("stopTimeout") is not None:
            config["StopTimeout"] = _int(inp["stopTimeout"])
        hc = inp.get("healthcheck")
        if hc:
            _check_keys(f"{name} healthcheck", hc, {"tests", "interval", "timeout", "startPeriod", "retries"})
            config["Healthcheck"] = {
                "Test": list(hc["tests"]),  # exec form kept as is: ["CMD", argv...]
                "Interval": go_duration_ns(hc.get("interval", "0s")),
                "Timeout": go_duration_ns(hc.get("timeout", "0s")),
                "StartPeriod": go_duration_ns(hc.get("startPeriod", "0s")),
                "Retries": _int(hc.get("retries", 0)),
            }
        if inp.get("readOnly") is not None:
            host["ReadonlyRootfs"] = bool(inp["readOnly"])
        if inp.get("tmpfs"):
            host["Tmpfs"] = dict(inp["tmpfs"])
        if inp.get("memory"):
            host["Memory"] = _int(inp["memory"]) * 1024 * 1024  # the provider's unit is MB
        if inp.get("cpus"):
            host["NanoCpus"] = round(float(inp["cpus"]) * 1e9)
        caps = inp.get("capabilities") or {}
        _check_keys(f"{name} capabilities", caps, {"adds", "drops"})
        if caps.get("adds"):
            host["CapAdd"] = list(caps["adds"])
        if caps.get("drops"):
            host["CapDrop"] = list(caps["drops"])
        if inp.get("securityOpts"):
            host["SecurityOpt"] = list(inp["securityOpts"])
        if inp.get("restart"):
            host["RestartPolicy"] = {"Name": inp["restart"], "MaximumRetryCount": 0}
        if inp.get("logDriver"):
            host["LogConfig"] = {"Type": inp["logDriver"], "Config": dict(inp.get("logOpts") or {})}
        elif inp.get("logOpts"):
            raise EngineError(f"{name}: logOpts without logDriver")
        if inp.get("init") is not None:
            host["Init"] = bool(inp["init"])
        if inp.get("shmSize"):
            host["ShmSize"] = _int(inp["shmSize"]) * 1024 * 1024  # MB
        exposed: dict[str, dict[str, Any]] = {}
        bindings: dict[str, list[dict[str, str]]] = {}
        for port in inp.get("ports") or []:
            _check_keys(f"{name} ports", port, {"internal", "external", "ip", "protocol"})
            key = f"{_int(port['internal'])}/{port.get('protocol') or 'tcp'}"
            exposed[key] = {}
            bindings.setdefault(key, []).append(
                {"HostIp": port.get("ip") or "", "HostPort": str(_int(port["external"])) if port.get("external") else ""}
            )
        if exposed:
            config["ExposedPorts"] = exposed
            host["PortBindings"] = bindings
        binds = []
        for vol in inp.get("volumes") or []:
            _check_keys(f"{name} volumes", vol, {"volumeName", "containerPath", "readOnly", "hostPath"})
            source = vol.get("volumeName") or vol.get("hostPath")
            if not source:
                raise EngineError(f"{name}: anonymous volumes are not translated")
            binds.append(f"{source}:{vol['containerPath']}" + (":ro" if vol.get("readOnly") else ""))
        if binds:
            host["Binds"] = binds
        networks = []
        for net in inp.get("networksAdvanced") or []:
            _check_keys(f"{name} networksAdvanced", net, {"name", "aliases"})
            networks.append((net["name"], list(net.get("aliases") or [])))
        networking: dict[str, Any] = {}
        if networks:
            first, aliases = networks[0]
            host["NetworkMode"] = first
            networking = {"EndpointsConfig": {first: {"Aliases": aliases} if aliases else {}}}
        body = {**config, "HostConfig": host, "NetworkingConfig": networking}
        return body, networks[1:]

    def _container_create(self, reg: Registration, a: Applied) -> tuple[str, dict[str, Any]]:
        inp = a.inputs
        name = inp.get("name") or f"{reg.name}-{secrets.token_hex(4)[:7]}"  # Pulumi's autonaming
        body, more_networks = self.container_create_body(reg.name, inp)
        api = self._api(a)
        created = api.call("POST", "/containers/create", body, query={"name": name})
        cid = created["Id"]
        a.id = cid
        a.outputs = {"name": name, "id": cid}
        try:
            for network, aliases in more_networks:
                api.call(
                    "POST",
                    f"/networks/{urllib.parse.quote(network, safe='')}/connect",
                    {"Container": cid, "EndpointConfig": {"Aliases": aliases}},
                )
            api.call("POST", f"/containers/{cid}/start", ok=(204, 304))
            if inp.get("wait"):
                self._wait_healthy(api, cid, name, _int(inp.get("waitTimeout") or 60))
            if inp.get("mustRun", True):
                state = (api.inspect_container(cid) or {}).get("State", {})
                if not state.get("Running"):
                    raise EngineError(
                        f"container {name} ({cid[:12]}) failed to be in running state: {state.get('Status')} (exit {state.get('ExitCode')})"
                    )
        except EngineError as exc:
            raise StepError(str(exc), partial=dataclasses.replace(a, outputs=dict(a.outputs))) from exc
        return cid, {"name": name, "id": cid}

    @staticmethod
    def _wait_healthy(api: DockerAPI, cid: str, name: str, timeout_s: int) -> None:
        """Poll until Docker reports healthy (once a second, like the provider); on timeout say why."""
        deadline = time.monotonic() + timeout_s
        info: dict[str, Any] = {}
        while True:
            info = api.inspect_container(cid) or {}
            health = (info.get("State") or {}).get("Health") or {}
            if health.get("Status") == "healthy":
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(min(HEALTH_POLL_S, max(0.0, deadline - time.monotonic())))
        state = info.get("State") or {}
        health = state.get("Health") or {}
        last = (health.get("Log") or [{}])[-1]
        probe = (last.get("Output") or "").strip().splitlines()
        raise EngineError(
            f"container {name} ({cid[:12]}) failed to be in healthy state in time ({timeout_s}s): "
            f"health status {health.get('Status', 'none')} after {health.get('FailingStreak', 0)} failing probe(s), "
            f"container {state.get('Status')}; last probe exit {last.get('ExitCode')}: {' | '.join(probe[-3:])[-600:]}"
        )

    def _container_update(self, old: Applied, new: Applied) -> dict[str, Any]:
        """The provider updates restart policy and resources in place; other in-place changes stay in its state only."""
        _check_keys(f"{new.name} (Container)", new.inputs, set(self.CONTAINER_INPUTS))
        keys = changed_keys(old.inputs, new.inputs)
        body: dict[str, Any] = {}
        if "restart" in keys:
            body["RestartPolicy"] = {"Name": new.inputs.get("restart") or "no", "MaximumRetryCount": 0}
        if "memory" in keys:
            body["Memory"] = _int(new.inputs.get("memory")) * 1024 * 1024
        if body:
            self._api(new).call("POST", f"/containers/{old.id}/update", body)
        return dict(old.outputs)

    def _container_delete(self, a: Applied) -> None:
        """The provider's Delete: stop with destroyGraceSeconds (when > 0), then force-remove with volumes."""
        api = self._api(a)
        grace = _int(a.inputs.get("destroyGraceSeconds"))
        if grace > 0:
            status, data = api.request("POST", f"/containers/{a.id}/stop", query={"t": grace}, timeout=grace + 60)
            if status not in (204, 304, 404):
                raise EngineError(f"stop {a.outputs.get('name')}: HTTP {status}: {data}")
        api.call("DELETE", f"/containers/{a.id}", query={"force": "true", "v": "true"}, ok=(204, 404))

    # ------------------------------------------------------------------ command:remote:Command, command:local:Command

    def _command(self, a: Applied, which: str) -> dict[str, Any]:
        inp = a.inputs
        script = inp.get(which)
        if a.type == "command:remote:Command":
            _check_keys(f"{a.name} (remote Command)", inp, {"connection", "create", "update", "delete", "stdin", "triggers", "environment"})
            argv = self._ssh_argv(a.name, inp["connection"])
        else:
            _check_keys(
                f"{a.name} (local Command)", inp, {"create", "update", "delete", "stdin", "triggers", "interpreter", "environment", "dir"}
            )
            argv = list(inp.get("interpreter") or ["/bin/sh", "-c"])
        if inp.get("environment"):
            raise EngineError(f"{a.name}: Command.environment is not translated")
        if not script:
            return dict(a.outputs)
        proc = _run([*argv, script], input=inp.get("stdin") if which != "delete" else None, timeout=900, cwd=ROOT)
        stdout, stderr = proc.stdout.rstrip("\n"), proc.stderr.rstrip("\n")
        if proc.returncode != 0:
            raise StepError(
                f"Process exited with status {proc.returncode}: running {which} of {a.name}:\nstdout: {stdout[-3000:]}\nstderr: {stderr[-3000:]}"
            )
        return {"stdout": stdout, "stderr": stderr}

    def _ssh_argv(self, name: str, conn: Mapping[str, Any]) -> list[str]:
        _check_keys(f"{name} connection", conn, {"host", "port", "user", "privateKey", "hostKey", "dialErrorLimit", "perDialTimeout"})
        host, port, user = conn["host"], _int(conn.get("port") or 22), conn.get("user") or "root"
        if not conn.get("hostKey"):
            raise EngineError(f"{name}: the connection pins no hostKey")
        keydir = self.workdir / "command-ssh" / re.sub(r"[^A-Za-z0-9_.-]", "_", f"{user}@{host}_{port}")
        keydir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = keydir / "id"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(conn["privateKey"] if conn["privateKey"].endswith("\n") else conn["privateKey"] + "\n")
        known = keydir / "known_hosts"
        known.write_text((f"[{host}]:{port}" if port != 22 else host) + f" {conn['hostKey']}\n")
        return [
            "ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={_int(conn.get('perDialTimeout') or 15)}",
            "-p", str(port), "-l", user, "--", host,
        ]  # fmt: skip


# --------------------------------------------------------------------------- a stack: config + state + previous outputs

SECRET_KEYS = frozenset({"sshPrivateKey", "registryPassword"})


def e2e_config(
    *,
    ssh_url: str,
    known_hosts: str,
    private_key: str,
    registry: str,
    registry_user: str,
    registry_password: str,
    http_port: int,
    replicas: int = 2,
    migrations: bool = True,
) -> dict[str, Any]:
    """A stack for this machine: the host over ssh (pinned key), the image pushed to the
    loopback registry, built offline from app/wheels, the edge on 127.0.0.1, short timeouts."""
    config: dict[str, Any] = {
        "appName": "web",
        "host": {"url": ssh_url, "knownHosts": known_hosts},
        "sshPrivateKey": private_key,
        "image": {
            "repository": f"{registry}/cutover/web",
            "push": True,
            "registryUsername": registry_user,
            "context": "./app",
            # app/Dockerfile: wheels from app/wheels/, no index (no registry reachable from builds here)
            "buildArgs": {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/build"},
        },
        "registryPassword": registry_password,
        "proxy": {"httpPort": http_port, "httpsPort": None, "bindAddress": "127.0.0.1", "image": "caddy:2", "drain": "2s"},
        "web": {"replicas": replicas, "stopTimeout": "10s", "waitTimeout": "20s"},
        "healthcheck": {"interval": "1s", "startPeriod": "10s", "retries": 2},
        "verify": {"interval": "1s", "attempts": 15},
        "releases": {"historySize": 10},
    }
    if migrations:
        config["migrations"] = {"command": ["python", "-m", "migrate"]}
    return config


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of config objects (overrides win)."""
    out = dict(base)
    for k, v in overrides.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def fake_sha(label: str, salt: str = "") -> str:
    """A 40-hex git SHA standing for a release name ('v1', 'v2', ...)."""
    import hashlib

    return hashlib.sha1(f"{salt}:{label}".encode()).hexdigest()  # noqa: S324 - an identifier, not security


class Stack:
    """One stack: its config, the engine holding its state, and its last outputs
    (which the program reads back through its StackReference to itself)."""

    def __init__(self, engine: Engine, config: Mapping[str, Any], secret_keys: frozenset[str] = SECRET_KEYS, name: str = "e2e") -> None:
        self.engine = engine
        self.config = dict(config)
        self.secret_keys = set(secret_keys)
        self.name = name
        self.outputs: dict[str, Any] = {}
        self.last_run: ProgramRun | None = None

    @property
    def qualified(self) -> str:
        return f"organization/{PROJECT}/{self.name}"

    def program(self, *, sha: str, rollback_to: str | None = None, overrides: Mapping[str, Any] | None = None) -> ProgramRun:
        env = {"CUTOVER_GIT_SHA": sha}
        if rollback_to:
            env["CUTOVER_ROLLBACK_TO"] = rollback_to
        config = merge(self.config, overrides or {})
        try:
            run = run_program(config, self.secret_keys, stack=self.name, stack_outputs={self.qualified: self.outputs}, env=env)
        except ProgramFailedError as exc:
            raise EngineError(f"the program failed before anything was applied: {exc}") from exc
        self.last_run = run
        return run

    def up(self, *, sha: str, rollback_to: str | None = None, overrides: Mapping[str, Any] | None = None) -> ApplyResult:
        """`pulumi up`; on success the stack's outputs are the new ones, on failure they stay."""
        run = self.program(sha=sha, rollback_to=rollback_to, overrides=overrides)
        result = self.engine.apply(run)
        self.outputs = result.outputs
        return result


def ensure_app_wheels() -> Path:
    """app/Dockerfile installs from app/wheels/ when built with PIP_NO_INDEX=1 (no package index is
    reachable from builds here): fill that git-ignored folder from the wheel cache of tests/e2e/infra.py."""
    from tests.e2e import infra

    source = infra.download_wheels(infra.APP_DIR / "requirements.txt")
    target = infra.APP_DIR / "wheels"
    target.mkdir(exist_ok=True)
    wanted = {w.name for w in source.glob("*.whl")}
    for stale in target.glob("*.whl"):
        if stale.name not in wanted:
            stale.unlink()
    for wheel in source.glob("*.whl"):
        if not (target / wheel.name).exists():
            shutil.copy2(wheel, target / wheel.name)
    return target
