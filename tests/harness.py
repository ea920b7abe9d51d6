"""Run the project's own Pulumi program under mocks and capture everything it registers.

Each registration is captured from the request the engine would receive, so the
tests see what `pulumi up` would see: inputs (with which of them are secret),
the resources each one depends on, the parent, the provider, and the resource
options that decide the order of a replacement (delete_before_replace, ...).
The e2e tests apply these same registrations to a real Docker engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from components.config.load import project_name

ROOT = Path(__file__).resolve().parent.parent
# the project's name (Pulumi.yaml), which is also the namespace of its config keys
PROJECT = project_name(ROOT)


def fake_digest(*parts: str) -> str:
    return "sha256:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


@dataclass
class Registration:
    """One resource as the engine would receive it."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    secret_inputs: set[str]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    provider: str
    options: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    # the output paths the engine would store as secrets (what the mocked provider returned wrapped)
    secret_outputs: set[str] = field(default_factory=set)
    # the inputs as sent, a protobuf Struct: secrets and unknowns still marked (tests/test_policy.py)
    wire: Any = None

    def depends_on(self, other: Registration) -> bool:
        """True when this resource waits for `other` (directly)."""
        deps = set(self.dependencies)
        for v in self.property_dependencies.values():
            deps.update(v)
        return other.urn in deps


def _unwrap(value: Any, path: str, secrets: set[str]) -> Any:
    """Strip Pulumi's secret wrappers, remembering the paths that were secret."""
    if rpc.is_rpc_secret(value):
        secrets.add(path)
        return _unwrap(rpc.unwrap_rpc_secret(value), path, set())
    if isinstance(value, dict):
        return {k: _unwrap(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


class ProgramMocks(pmocks.Mocks):
    """Provider behaviour the program relies on: auto-naming, digests, stack outputs."""

    def __init__(self, stack_outputs: Mapping[str, Mapping[str, Any]]) -> None:
        self.stack_outputs = stack_outputs

    def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        outputs = dict(args.inputs)
        rid = f"{args.name}-id"
        if args.typ == "pulumi:pulumi:StackReference":
            name = args.inputs["name"]
            outputs = {"name": name, "outputs": dict(self.stack_outputs.get(name, {})), "secretOutputNames": []}
            rid = name
        elif args.typ == "docker:index/image:Image":
            digest = fake_digest(json.dumps(args.inputs, sort_keys=True, default=str))
            repo = args.inputs["imageName"].rsplit(":", 1)[0]
            # pulumi-docker provider/image.go:286-294 and 336-353: the built image's ID when not pushed
            outputs["repoDigest"] = digest if args.inputs.get("skipPush") else f"{repo}@{digest}"
        elif args.typ == "docker:index/remoteImage:RemoteImage":
            outputs["imageId"] = fake_digest(args.inputs["name"])
            outputs["repoDigest"] = args.inputs["name"] if "@sha256:" in args.inputs["name"] else ""
        elif args.typ in ("docker:index/container:Container", "docker:index/service:Service"):
            # the bridge autonames both: <resource name>-<7 hex> (pulumi-docker provider/resources.go SetAutonaming)
            outputs.setdefault(
                "name", f"{args.name}-{hashlib.sha256(json.dumps(args.inputs, sort_keys=True, default=str).encode()).hexdigest()[:7]}"
            )
        elif args.typ in ("docker:index/network:Network", "docker:index/volume:Volume"):
            outputs.setdefault("name", f"{args.name}-{hashlib.sha256(args.name.encode()).hexdigest()[:7]}")
        elif args.typ.startswith("command:"):
            outputs.setdefault("stdout", "")
            outputs.setdefault("stderr", "")
        return rid, outputs

    def call(self, args: pmocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "github:index/getUser:getUser":
            # A deterministic numeric id per login, as a string like the provider returns it.
            login = args.args["username"]
            user_id = int(hashlib.sha256(login.encode()).hexdigest()[:8], 16)
            return {"id": str(user_id), "login": login, "username": login, "nodeId": f"U_{user_id}"}, []
        return {}, None


class RecordingMonitor(pmocks.MockMonitor):
    def __init__(self, mocks: ProgramMocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        secrets: set[str] = set()
        inputs = _unwrap(rpc.deserialize_properties(request.object, keep_unknowns=True), "", secrets)
        urn = self.make_urn(request.parent, request.type, request.name)
        reg = self.resources[urn]
        secret_outputs: set[str] = set()
        state = _unwrap(reg.state, "", secret_outputs)
        self.registrations.append(
            Registration(
                type=request.type,
                name=request.name,
                urn=urn,
                parent=request.parent,
                custom=request.custom,
                inputs=inputs,
                secret_inputs=secrets,
                dependencies=list(request.dependencies),
                property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                provider=request.provider,
                options={
                    "deleteBeforeReplace": request.deleteBeforeReplace,
                    # the engine lets the program's value override the provider's only when this is set
                    "deleteBeforeReplaceDefined": request.deleteBeforeReplaceDefined,
                    "replaceOnChanges": list(request.replaceOnChanges),
                    "ignoreChanges": list(request.ignoreChanges),
                    "protect": request.protect,
                    "retainOnDelete": request.retainOnDelete,
                    "deletedWith": request.deletedWith,
                    "customTimeouts": {
                        "create": request.customTimeouts.create,
                        "update": request.customTimeouts.update,
                        "delete": request.customTimeouts.delete,
                    },
                    "additionalSecretOutputs": list(request.additionalSecretOutputs),
                    # the names a resource had before, as the engine receives them (name, type, parent: "" is its own)
                    "aliases": [
                        {"urn": a.urn}
                        if a.urn
                        else {"name": a.spec.name, "type": a.spec.type, "parent": a.spec.parentUrn, "noParent": a.spec.noParent}
                        for a in request.aliases
                    ],
                },
                outputs=state,
                id=reg.id or "",
                secret_outputs=secret_outputs,
                wire=request.object,
            )
        )
        return response


class ProgramFailedError(Exception):
    """The program failed; `registrations` holds what it registered before that."""

    def __init__(self, error: BaseException, registrations: list[Registration]) -> None:
        super().__init__(str(error))
        self.registrations = registrations


@dataclass
class ProgramRun:
    registrations: list[Registration]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    # the URNs of resources each stack output waits for (the engine stores outputs once they resolve)
    output_resources: dict[str, set[str]] = field(default_factory=dict)
    # the ssh:// hosts whose deploy key the program looked for in the ssh agent
    agent_checks: list[str] = field(default_factory=list)

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str, name_contains: str = "") -> Registration:
        found = [r for r in self.of_type(typ) if name_contains in r.name]
        assert len(found) == 1, f"expected one {typ} named *{name_contains}*, found {[r.name for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def types(self) -> set[str]:
        return {r.type for r in self.registrations}


def config_values(config: Mapping[str, Any], project: str = PROJECT) -> dict[str, str]:
    """Pulumi stores config as strings, objects as JSON."""
    return {f"{project}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def run_program(
    config: Mapping[str, Any],
    secret_keys: set[str] | frozenset[str] = frozenset(),
    stack: str = "dev",
    stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
    env: Mapping[str, str] | None = None,
    preview: bool = False,
    ssh_agent_env: Mapping[str, str] | None = None,
    config_extra: Mapping[str, str] | None = None,
    project: str = PROJECT,
) -> ProgramRun:
    """Run __main__.py under mocks as the project `project`; `stack_outputs` maps a stack reference name to its outputs.

    `config_extra`: secret config keys of other namespaces, by full name (``github:token``).

    The program's check that the ssh agent holds the deploy key asks a real agent only when
    `ssh_agent_env` names one (the e2e tests, and the unit tests of the check): it finds there
    what the caller loaded, as make and the workflows load it before pulumi starts. Otherwise
    the call is recorded in `agent_checks` and no agent is asked.
    """
    import components.host.ssh

    checked: list[str] = []
    real_check = components.host.ssh.check_deploy_key

    def check_deploy_key(host: Any, project: str, stack: str, env: Mapping[str, str] | None = None) -> None:
        if host.is_ssh and host.private_key is not None:
            checked.append(host.url)
        if ssh_agent_env is not None:
            real_check(host, project, stack, ssh_agent_env)

    mocks = ProgramMocks(stack_outputs or {})
    monitor = RecordingMonitor(mocks)
    # a new root stack resource each run: its exports are this run's only (set_mocks keeps an existing one)
    pulumi_settings.ROOT.set(None)
    pmocks.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor, organization="organization")
    # set_mocks made a root stack and closed it; the program runs in one of its own, as the language host runs it
    # (sdk/python/cmd/pulumi-language-python-exec: run_in_stack, which awaits the entrypoint pulumi.run registers)
    pulumi_settings.ROOT.set(None)
    extra = dict(config_extra or {})
    set_all_config({**config_values(config, project), **extra}, [f"{project}:{k}" for k in secret_keys] + list(extra))
    environ = {"CUTOVER_GIT_SHA": "0123456789abcdef0123456789abcdef01234567", **(env or {})}
    cleared = {k: "" for k in ("CUTOVER_ROLLBACK_TO", "GITHUB_SHA") if k not in environ}
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        with (
            mock.patch.dict(os.environ, {**cleared, **environ}),
            mock.patch.object(components.host.ssh, "check_deploy_key", check_deploy_key),
        ):
            stacks: list[Any] = []

            def program() -> None:
                # the stack run_in_stack made (in the context it runs the program in); pulumi.run's entrypoint,
                # awaited after this returns, exports into it too
                stacks.append(get_root_resource())
                runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

            try:
                _sync_await(run_in_stack(program))
            except (SystemExit, Exception) as error:
                raise ProgramFailedError(error, monitor.registrations) from error
            stack_resource = stacks[0]
            outputs: dict[str, Any] = {}
            secret_outputs: set[str] = set()
            output_resources: dict[str, set[str]] = {}
            for name, value in getattr(stack_resource, "outputs", {}).items():
                out = pulumi.Output.from_input(value)
                outputs[name] = _sync_await(out.future())
                if _sync_await(out.is_secret()):
                    secret_outputs.add(name)
                output_resources[name] = {_sync_await(r.urn.future()) for r in _sync_await(out.resources())}
    finally:
        os.chdir(cwd)
    return ProgramRun(monitor.registrations, outputs, secret_outputs, output_resources, checked)


def load_stack_file(stack: str) -> tuple[dict[str, Any], set[str]]:
    """The `<project>:*` config of Pulumi.<stack>.yaml, with its `secure:` keys given placeholder values."""
    import yaml

    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, Any] = {}
    secrets: set[str] = set()
    for key, value in (data.get("config") or {}).items():
        ns, _, name = key.partition(":")
        if ns != PROJECT:
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            secrets.add(name)
            value = "placeholder-secret-value"
        config[name] = value
    return config, secrets
