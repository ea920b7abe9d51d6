"""The Pulumi engine's update, refresh and destroy, for this program's resources, against real hosts.

PE = pulumi/pulumi 1b594989 (after v3.259.0), pkg/resource/deploy/ (de = deployment_executor.go,
sg = step_generator.go, se = step_executor.go), pkg/cmd/pulumi/operations/.

* One `up` is one pulumi process: its environment (`Engine.env`: SSH_AUTH_SOCK, DOCKER_HOST,
  HOME) is what the providers and their ssh see, and every provider is configured afresh.
* `refresh=True` without `run_program`: before the program, every resource in the state is
  read with the provider *as the state recorded it* (de.go:167-175, deployment.go:712-743):
  containers gone are dropped, stopped ones read back must_run=false and no ports, and init
  errors are cleared (step.go:1579-1645).
* `refresh=True, run_program=True`: each resource is read when the program registers it,
  with the provider the program configured (sg.go:852-893, step.go:1490).
* Steps: a registration runs once everything it depends on has finished (explicit and
  property dependencies, parent, provider), independent ones in parallel, at most
  `parallel` at once: PULUMI_PARALLEL, else 4 x CPUs (operations/up.go:71-89). What each
  step does is plan.decide's answer.
* A failed step cancels the update (se.go:435-467): steps already running finish, nothing new
  starts, nothing is deleted. A container whose create failed after Docker made it is kept
  with its init error (step.go:390-392); when it was a create-before-delete replacement, the
  container it replaced is marked for deletion (step.go:467-473) and deleted at the end of the
  next successful update (sg.go:2390-2423).
* Stack outputs: the program registers them once every value resolved (Python SDK stack.py,
  runtime/resource.py:1285), i.e. once the resources they wait for finished; the engine keeps
  registered outputs even when the update then fails (se.go:223-231, 263-268). So a failure
  before they resolved leaves the old outputs, one after (a delete, a later resource) the new.
* Deletions run only after a successful program (de.go:324-343): replaced resources, those
  marked earlier, and those no longer registered; dependents first, each level in parallel;
  retainOnDelete skips the provider's Delete but not its configuration (step.go:661,
  sg.go:2435-2444).
* Mock outputs (container names like `web-0-3b9444b`, fake image IDs and digests) are
  translated to the real values as they become known, so later inputs carry the real ones.

Any input this package does not translate is refused, so a new program input can never be
silently ignored here.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.e2e.replay import plan, providers
from tests.e2e.replay.docker_api import DockerAPIError
from tests.e2e.replay.providers import DockerProvider, ProviderError
from tests.harness import ProgramRun, Registration
from tests.schema import load_schema


class EngineError(RuntimeError):
    """Something the engine cannot do."""


class UpdateFailedError(EngineError):
    """`pulumi up` (or refresh) failed: what failed and why, plus the steps that did run."""

    def __init__(self, errors: list[tuple[str, str]], result: ApplyResult) -> None:
        self.errors = errors
        self.result = result
        super().__init__("update failed:\n" + "\n".join(f"  {name}: {message}" for name, message in errors))


@dataclasses.dataclass
class Applied:
    """A resource in the state."""

    urn: str
    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    deps: set[str]
    options: dict[str, Any]
    provider: str  # URN of its explicit provider, "" for the default one
    init_errors: tuple[str, ...] = ()


@dataclasses.dataclass
class Op:
    """One step, with monotonic start and end times."""

    urn: str
    name: str
    type: str
    action: str  # create, update, replace, same, adopt, refresh, delete, delete-replaced, delete-pending
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
    outputs_registered: bool = False

    @property
    def duration(self) -> float:
        return self.ended - self.started

    def op(self, name: str, action: str | None = None) -> Op | None:
        found = [o for o in self.ops if o.name == name and (action is None or o.action == action)]
        return found[-1] if found else None

    def step(self, name: str) -> Op | None:
        """The create, update or replace step of `name` in this update (not a deletion of its old self)."""
        found = [o for o in self.ops if o.name == name and o.action in ("create", "update", "replace", "adopt")]
        return found[-1] if found else None

    def actions(self, type_: str | None = None) -> list[tuple[str, str]]:
        return [(o.name, o.action) for o in self.ops if type_ is None or o.type == type_]

    def changed(self, type_: str | None = None) -> list[tuple[str, str]]:
        """The steps that changed something (not `same`, not `refresh`)."""
        return [(o.name, o.action) for o in self.ops if o.action not in ("same", "refresh") and (type_ is None or o.type == type_)]

    def ran(self, name: str) -> bool:
        return any(o.name == name and o.action not in ("same", "refresh") for o in self.ops)


def default_parallelism(env: Mapping[str, str]) -> int:
    """PULUMI_PARALLEL when above 0, else 4 x GOMAXPROCS (PE operations/up.go:71-89)."""
    try:
        given = int(env.get("PULUMI_PARALLEL", "0"))
    except ValueError:
        given = 0
    return given if given > 0 else 4 * (os.cpu_count() or 1)


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


_SCHEMA_LOCK = threading.Lock()
_FORCE_NEW: dict[str, frozenset[str]] = {}


def force_new(type_: str) -> frozenset[str]:
    """The inputs whose change replaces the resource: the schema's willReplaceOnChanges (the bridge
    writes ForceNew fields there)."""
    if not type_.startswith("docker:index/"):
        return frozenset()
    with _SCHEMA_LOCK:
        if type_ not in _FORCE_NEW:
            props = load_schema("docker")["resources"][type_]["inputProperties"]
            _FORCE_NEW[type_] = frozenset(k for k, v in props.items() if v.get("willReplaceOnChanges"))
        return _FORCE_NEW[type_]


class Engine:
    """The state of one stack and the engine that changes it. `before_step(registration, action)` is called
    before each step runs (tests use it to act at a precise moment, e.g. just before the traffic switch)."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        parallel: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.state: dict[str, Applied] = {}
        self.pending_deletes: list[Applied] = []
        self.outputs: dict[str, Any] = {}
        self.before_step: Callable[[Registration, str], None] | None = None
        self._log = log or (lambda msg: None)
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="cutover-replay-")) if workdir is None else workdir
        os.chmod(self.workdir, 0o700)
        self._lock = threading.Lock()
        self.updates: list[ApplyResult] = []
        self.env: dict[str, str] = {}
        self._parallel = parallel
        self.commands: providers.CommandRunner | None = None
        self._providers: dict[str, DockerProvider] = {}
        self.use_machine(dict(os.environ if env is None else env))

    @property
    def parallel(self) -> int:
        return self._parallel or default_parallelism(self.env)

    def use_machine(self, env: Mapping[str, str]) -> None:
        """The next operations run as a pulumi process with this environment (another machine, a fresh runner)."""
        if self.commands is not None:
            self.commands.close()
        self.env = dict(env)
        self.commands = providers.CommandRunner(self.workdir, self.env)
        self._providers = {}

    def close(self) -> None:
        if self.commands is not None:
            self.commands.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ providers

    def _configure(self, urn: str, inputs: Mapping[str, Any]) -> DockerProvider:
        provider = providers.configure_docker(inputs, self.env)
        with self._lock:
            self._providers[urn] = provider
        return provider

    def _docker(self, a: Applied) -> DockerProvider:
        """The provider a docker resource's step uses: configured this run, or from the state (a delete, a refresh)."""
        key = a.provider
        with self._lock:
            found = self._providers.get(key)
        if found is not None:
            return found
        if not key:
            return self._configure("", {})  # the default provider: stack config (none) and the environment
        owner = self.state.get(key)
        if owner is None:
            raise EngineError(f"{a.name}: its provider {key} is not in the state")
        return self._configure(key, owner.inputs)

    # ------------------------------------------------------------------ pulumi refresh (before the program)

    def refresh(self, result: ApplyResult | None = None) -> ApplyResult:
        """Read every resource back with the providers the state recorded (no program)."""
        result = result or ApplyResult(started=time.monotonic())
        errors: list[tuple[str, str]] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="refresh") as pool:
            futures = {
                pool.submit(self._refresh_one, a, result): a
                for a in list(self.state.values())
                if not a.type.startswith("pulumi:providers:")
            }
            for fut in concurrent.futures.as_completed(futures):
                try:
                    fut.result()
                except Exception as exc:
                    errors.append((f"{futures[fut].name} ({futures[fut].type})", f"refreshing {futures[fut].urn}: {exc}"))
        result.ended = time.monotonic()
        if errors:
            raise UpdateFailedError(errors, result)
        return result

    def _refresh_one(self, a: Applied, result: ApplyResult) -> None:
        op = Op(a.urn, a.name, a.type, "refresh", time.monotonic())
        result.ops.append(op)
        try:
            if a.type.startswith("docker:"):
                read = self._read(a, self._docker(a))
                if read is None:  # Read found it gone: refresh drops it from the state
                    op.detail = "gone"
                    with self._lock:
                        self.state.pop(a.urn, None)
                    return
                a.outputs = read
            a.init_errors = ()  # a successful Read clears them (PE step.go:1642)
        except (ProviderError, DockerAPIError) as exc:
            op.ok, op.detail = False, str(exc)
            raise
        finally:
            op.end = time.monotonic()

    @staticmethod
    def _read(a: Applied, provider: DockerProvider) -> dict[str, Any] | None:
        """The provider's Read of one docker resource: what it stores now, or None when the resource is gone.
        A network or a volume is not read (README: what the replay does not model): kept as stored."""
        if a.type == plan.CONTAINER:
            return providers.container_read(provider, a.id, a.outputs)
        if a.type == plan.SERVICE:
            return providers.service_refresh(provider, a.id, a.outputs)
        if a.type == plan.REMOTE_IMAGE and provider.client().inspect_image(a.outputs.get("imageId", a.inputs["name"])) is None:
            return None
        return a.outputs

    # ------------------------------------------------------------------ pulumi up

    def up(self, run: ProgramRun, *, refresh: bool = False, run_program: bool = False) -> ApplyResult:
        result = ApplyResult(started=time.monotonic())
        self.updates.append(result)
        self._providers = {}  # a new pulumi process
        if refresh and not run_program:
            self.refresh(result)  # (Stack.up runs this before the program, as the CLI does)
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
                            running[pool.submit(self._step, reg, mapping, replaced, result, refresh and run_program)] = reg
                else:
                    waiting.clear()
                if not running:
                    if waiting:
                        raise EngineError(f"no registration can run (a dependency is never registered): {[r.name for r in waiting]}")
                    break
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for fut in finished:
                    reg = running.pop(fut)
                    try:
                        fut.result()
                        done.add(reg.urn)
                    except Exception as exc:  # every failure is reported, like Pulumi's diagnostics
                        errors.append((f"{reg.name} ({reg.type})", str(exc)))

        # The program registers its outputs once all of them resolved: once what they wait for finished.
        needed = set().union(*run.output_resources.values()) if run.output_resources else set()
        result.outputs_registered = needed <= done
        new_outputs = translate(copy.deepcopy(run.outputs), mapping)
        if errors:
            if result.outputs_registered:
                self.outputs = {**self.outputs, **new_outputs}
            result.outputs = dict(self.outputs)
            result.ended = time.monotonic()
            self._log(f"update failed after {result.duration:.1f}s: {errors}")
            raise UpdateFailedError(errors, result)
        self.outputs = new_outputs
        result.outputs = dict(new_outputs)

        gone = [a for urn, a in self.state.items() if urn not in registered]
        for a in gone:
            del self.state[a.urn]
        to_delete = [(a, "delete-replaced") for a in replaced]
        to_delete += [(a, "delete-pending") for a in self.pending_deletes]
        to_delete += [(a, "delete") for a in gone]
        self.pending_deletes = []
        self._delete_all(to_delete, result)
        result.ended = time.monotonic()
        steps = ", ".join(f"{o.name} {o.action} {o.end - o.start:.1f}s" for o in result.ops if o.action not in ("same", "refresh"))
        self._log(f"update done in {result.duration:.1f}s: {steps}")
        return result

    def destroy(self) -> ApplyResult:
        """`pulumi destroy`: every resource, dependents first (retainOnDelete honoured)."""
        result = ApplyResult(started=time.monotonic())
        self._providers = {}
        items = [(a, "delete") for a in self.state.values()] + [(a, "delete-pending") for a in self.pending_deletes]
        self.pending_deletes = []
        try:
            self._delete_all(items, result)
        finally:
            deleted = {o.urn for o in result.ops if o.ok and o.action.startswith("delete")}
            self.state = {urn: a for urn, a in self.state.items() if urn not in deleted}
            self.outputs = {}
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
                        errors.append((f"{a.name} ({a.type})", f"deleting {a.urn}: {exc}"))
                        self.pending_deletes.append(a)
            if errors:
                self.pending_deletes.extend(items[i][0] for i in range(len(items)) if level[i] > lv)
                result.ended = time.monotonic()
                raise UpdateFailedError(errors, result)

    def _delete_one(self, a: Applied, action: str, result: ApplyResult) -> None:
        op = Op(a.urn, a.name, a.type, action, time.monotonic())
        result.ops.append(op)
        try:
            if a.type.startswith("pulumi:providers:"):
                return  # deleting a provider resource configures nothing (PE providers/registry.go:1016-1029)
            # the engine makes the provider available for every delete, a retained one too (PE sg.go:2435-2444)
            docker_provider = self._docker(a) if a.type.startswith("docker:") else None
            if a.options.get("retainOnDelete"):
                op.detail = "retained (retainOnDelete)"
                return
            self._delete(a, docker_provider)
        except Exception as exc:
            op.ok, op.detail = False, str(exc)
            raise
        finally:
            op.end = time.monotonic()

    def _delete(self, a: Applied, provider: DockerProvider | None) -> None:
        if a.type == plan.IMAGE:
            return  # PD provider.go:488-495: the image and its tags stay, locally and in the registry
        if a.type == plan.CONTAINER:
            assert provider is not None
            providers.container_delete(provider, a.id, a.outputs)
        elif a.type == plan.SERVICE:
            assert provider is not None
            providers.service_delete(provider, a.id, a.outputs)
        elif a.type == plan.REMOTE_IMAGE:
            assert provider is not None
            if not a.inputs.get("keepLocally"):
                status, _ = provider.client().request("DELETE", f"/images/{a.outputs.get('imageId', a.inputs['name'])}")
                del status
        elif a.type == plan.NETWORK:
            assert provider is not None
            provider.client().call("DELETE", f"/networks/{a.id}", ok=(200, 204, 404))
        elif a.type == plan.VOLUME:
            assert provider is not None
            provider.client().call("DELETE", f"/volumes/{a.id}", ok=(204, 404))
        elif a.type in (plan.REMOTE_COMMAND, plan.LOCAL_COMMAND):
            if a.inputs.get("delete"):
                assert self.commands is not None
                self.commands.run(a.type, a.inputs, "delete")
        else:
            raise EngineError(f"{a.name}: deleting {a.type} is not implemented")

    # ------------------------------------------------------------------ one step

    def _step(self, reg: Registration, mapping: dict[str, str], replaced: list[Applied], result: ApplyResult, refresh_now: bool) -> None:
        if not reg.custom:
            return  # component resources have nothing to do
        with self._lock:
            inputs = translate(copy.deepcopy(reg.inputs), mapping)
        provider_urn = reg.provider.rsplit("::", 1)[0] if reg.provider else ""
        deps = set(reg.dependencies) | {d for v in reg.property_dependencies.values() for d in v}
        new = Applied(reg.urn, reg.type, reg.name, "", inputs, {}, deps, dict(reg.options), provider_urn)
        if reg.type == plan.IMAGE:
            new.inputs = inputs = providers.image_check(inputs)
        if reg.type == plan.DOCKER_PROVIDER:
            self._configure(reg.urn, inputs)  # a provider is configured when registered
        old = self.state.get(reg.urn)
        if refresh_now and old is not None and not reg.type.startswith("pulumi:providers:"):
            self._refresh_one(old, result)  # --run-program: read as the program declares it
            old = self.state.get(reg.urn)
        decision = plan.decide(
            reg.type,
            None if old is None else plan.Old(old.type, old.inputs, old.outputs, old.init_errors),
            inputs,
            reg.options,
            force_new(reg.type),
        )
        if self.before_step is not None:
            self.before_step(reg, decision.action)
        op = Op(reg.urn, reg.name, reg.type, decision.action, time.monotonic(), detail=decision.describe())
        result.ops.append(op)
        try:
            if decision.action == "same":
                assert old is not None
                new.id, new.outputs = old.id, old.outputs
            elif decision.action == "adopt":
                # an empty Update: the bridge sees no change and keeps the state; nothing is waited for
                assert old is not None
                new.id, new.outputs = old.id, old.outputs
            elif decision.action == "update":
                assert old is not None
                new.id = old.id
                new.outputs = self._update(reg, old, new)
            elif decision.action == "replace" and decision.delete_before_replace:
                assert old is not None
                self._delete(old, self._docker(old) if old.type.startswith("docker:") else None)
                with self._lock:
                    del self.state[reg.urn]
                self._create(reg, new)
            elif decision.action == "replace":
                assert old is not None
                self._create(reg, new)
                replaced.append(old)
            else:
                self._create(reg, new)
        except ProviderError as exc:
            op.ok, op.end = False, time.monotonic()
            message = str(exc)
            if exc.partial is not None:
                # the bridge: "creating <urn>: 1 error occurred:\n\t* <err>" with the state (TB provider.go:1370-1413)
                message = f"creating {reg.urn}: 1 error occurred:\n\t* {exc}\n\n"
                partial = dataclasses.replace(new, id=exc.partial["id"], outputs=exc.partial["state"], init_errors=(message,))
                with self._lock:
                    self.state[reg.urn] = partial
                    if old is not None and decision.action == "replace" and not decision.delete_before_replace:
                        self.pending_deletes.append(old)
            op.detail = message
            raise ProviderError(message) from exc
        except Exception as exc:
            op.ok, op.detail, op.end = False, str(exc), time.monotonic()
            raise
        op.end = time.monotonic()
        with self._lock:
            self.state[reg.urn] = new
            # a container's ID stands in the inputs of those that name it (network_mode "container:<id>"), and a
            # network's in a service's (networks_advanced by ID)
            pairs = [*reg.outputs.items(), *([("id", reg.id)] if reg.type in (plan.CONTAINER, plan.NETWORK) else [])]
            for key, mock in pairs:
                real = new.id if key == "id" else new.outputs.get(key)
                if isinstance(mock, str) and isinstance(real, str) and len(mock) >= 6 and mock != real and mock != reg.inputs.get(key):
                    if mapping.get(mock, real) != real:
                        raise EngineError(f"mock value {mock!r} stands for two real values: {mapping[mock]!r} and {real!r}")
                    mapping[mock] = real

    def _create(self, reg: Registration, new: Applied) -> None:
        kind = reg.type
        if kind == plan.DOCKER_PROVIDER:
            new.id, new.outputs = f"{reg.name}-{secrets.token_hex(4)}", dict(new.inputs)
        elif kind == plan.IMAGE:
            self._docker(new)  # the default provider is configured first
            new.id, new.outputs = providers.image_build(new.inputs, self.workdir, self.env)
        elif kind == plan.REMOTE_IMAGE:
            new.id, new.outputs = providers.remote_image(self._docker(new), new.inputs)
        elif kind == plan.NETWORK:
            new.id, new.outputs = providers.network_create(self._docker(new), new.inputs)
        elif kind == plan.VOLUME:
            new.id, new.outputs = providers.volume_create(self._docker(new), new.inputs)
        elif kind == plan.CONTAINER:
            new.id, new.outputs = providers.container_create(self._docker(new), reg.name, new.inputs)
        elif kind == plan.SERVICE:
            new.id, new.outputs = providers.service_create(self._docker(new), reg.name, new.inputs)
        elif kind in (plan.REMOTE_COMMAND, plan.LOCAL_COMMAND):
            assert self.commands is not None
            new.id = f"{reg.name}-{secrets.token_hex(4)}"
            new.outputs = self.commands.run(kind, new.inputs, "create")
        else:
            raise EngineError(f"{reg.name}: resource type {kind} is not implemented by tests/e2e/replay")

    def _update(self, reg: Registration, old: Applied, new: Applied) -> dict[str, Any]:
        kind = reg.type
        if kind == plan.DOCKER_PROVIDER:
            return dict(new.inputs)
        if kind == plan.IMAGE:
            self._docker(new)
            return providers.image_build(new.inputs, self.workdir, self.env)[1]  # PD: an update builds and pushes again
        if kind == plan.CONTAINER:
            return providers.container_update(self._docker(new), old.id, old.outputs, new.inputs)
        if kind in (plan.REMOTE_COMMAND, plan.LOCAL_COMMAND):
            # PC: an update runs `update` when there is one, `create` again otherwise
            assert self.commands is not None
            return self.commands.run(kind, new.inputs, "update" if new.inputs.get("update") else "create")
        if kind in (plan.VOLUME, plan.NETWORK, plan.REMOTE_IMAGE):
            return {**old.outputs, **new.inputs}
        raise EngineError(f"{reg.name}: in-place update of {kind} is not implemented")
