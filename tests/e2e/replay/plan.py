"""What `pulumi up` decides to do with each resource, as the engine and the providers decide it. Pure.

Every rule here is read from the source named beside it:

  PE   pulumi/pulumi 1b594989 (after v3.259.0)  pkg/resource/deploy/step_generator.go (sg), step.go
  PD   pulumi/pulumi-docker 237b7899 (v5.1.0+24, the 5.2.0 SDK's base)  provider/resources.go, provider/provider.go
  KW   kreuzwerker/terraform-provider-docker v4.5.0 (what PD bridges)  internal/provider/*
  TB   pulumi/pulumi-terraform-bridge v3.137  pkg/tfbridge/provider.go, schema.go
  PGP  pulumi/pulumi-go-provider v1.3.0 (pulumi-command 1.2.1's SDK)  infer/resource.go

The decision for one registered resource, given what the state holds for its URN:

1. No old resource: create.
2. The provider's diff (`provider_diff`): the changed keys and which of them replace.
   - docker containers, networks, volumes, remote images (bridged): the old *state*
     (what Read stored after Create, readback.py) against the new inputs (TB
     provider.go:1137-1192); a change to a ForceNew field replaces (the schema's
     `willReplaceOnChanges`), any other is an in-place update.
   - docker services (bridged): the same, against what Read stored (providers.service_read), with a path under
     `ignoreChanges` left out of the provider's diff, however deep (TB tfshim/sdk-v2/instance_diff.go:95-109,
     called with the engine's ignoreChanges, TB provider.go:1184-1190).
   - docker.Image (native): old inputs against new inputs; any change is an update that
     builds and pushes again, never a replace (PD provider.go:271-347).
   - commands: a change of `triggers` replaces (PGP resource.go:1228-1231, triggers are
     replaceOnChanges), any other change is an update (PGP resource.go:1132-1150).
   - the docker provider itself: a configuration change is an in-place update; the bridge
     replaces a provider only for fields marked ForcesProviderReplace, and PD marks none
     (TB provider.go:855-893).
3. `ignoreChanges` keys never differ (PE sg.go:1264-1269, 3074-3096).
4. `replaceOnChanges` turns a changed key under a listed path into a replacement; "*" or
   "#initerror" also replaces a resource the state holds with init errors (PE sg.go:3163-3250).
5. No change, but init errors in the state: an empty Update that keeps the resource as it
   is; for a container, no health wait (PE sg.go:2180-2195; KW Update waits for nothing).
6. A replacement deletes first when the provider asks for it, unless the program set the
   option, true or false (PE sg.go:2040-2047): PD asks for it on every docker_container
   (PD resources.go:112-114); the bridge asks for nothing else here, and pulumi-go-provider
   never asks (PGP resource.go:1247-1249). Otherwise the new one is created first (a new
   auto-name: the engine checks the inputs again without the old ones, PE sg.go:2003-2021,
   and the bridge reuses an old default only when given old inputs, TB schema.go:790-799),
   and the old one is deleted at the end of the update.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/image:Image"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
SERVICE = "docker:index/service:Service"
DOCKER_PROVIDER = "pulumi:providers:docker"
REMOTE_COMMAND = "command:remote:Command"
LOCAL_COMMAND = "command:local:Command"
BRIDGED = (CONTAINER, REMOTE_IMAGE, NETWORK, VOLUME, SERVICE)

# PD provider/resources.go:112-114: `"docker_container": {..., DeleteBeforeReplace: true}`, returned by the
# bridge on every replacement of one (TB provider.go:1275-1276).
PROVIDER_DELETES_FIRST = frozenset({CONTAINER})

# docker_container fields that are TypeSet in KW resource_docker_container.go: order does not matter.
_SET_FIELDS = frozenset({"envs", "labels", "networksAdvanced", "volumes", "securityOpts"})
# ... and fields that Read writes even when the program leaves them out, without being Computed
# (KW resource_docker_container.go: memory_swap R:856-861, memory R:842-847, cpus R:1158-1163, tmpfs R:482-486):
# a value there against an unset input is a change.
_READ_BACK_NOT_COMPUTED = frozenset({"memorySwap", "memory", "cpus", "tmpfs"})


@dataclasses.dataclass(frozen=True)
class Old:
    """What the state holds for a URN."""

    type: str
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]  # for bridged resources: what Read stored (the diff's "old" side)
    init_errors: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str  # create | same | update | replace | adopt (the empty Update of a resource with init errors)
    delete_before_replace: bool = False
    changed: tuple[str, ...] = ()
    replace_keys: tuple[str, ...] = ()

    def describe(self) -> str:
        what = self.action + (" (delete first)" if self.action == "replace" and self.delete_before_replace else "")
        if self.changed:
            what += f": {', '.join(self.changed)}"
        if self.replace_keys:
            what += f"; replaces on {', '.join(self.replace_keys)}"
        return what


def _canon(value: Any, set_like: bool = False) -> Any:
    """A value as Terraform compares it: 1 == 1.0, None-valued keys absent, sets unordered."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _canon(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        items = [_canon(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True)) if set_like else items
    return value


def container_config(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The program's container inputs with the schema's defaults filled in, as Terraform sees the config:
    ports `ip` "0.0.0.0" and `protocol` "tcp" (KW R:509-531), healthcheck `startInterval` "0s" (R:1045-1096),
    capabilities' empty sets."""
    config = dict(inputs)
    if config.get("ports"):
        config["ports"] = [{"ip": "0.0.0.0", "protocol": "tcp", **{k: v for k, v in p.items() if v is not None}} for p in config["ports"]]
    if config.get("healthcheck"):
        config["healthcheck"] = {"startInterval": "0s", **config["healthcheck"]}
    if config.get("capabilities"):
        caps = config["capabilities"]
        config["capabilities"] = {k: sorted(caps.get(k) or []) for k in ("adds", "drops") if caps.get(k)}
    return config


def container_diff(state: Mapping[str, Any], inputs: Mapping[str, Any]) -> list[str]:
    """The docker_container keys whose state (as Read stored it) differs from the new inputs."""
    config = container_config(inputs)
    changed = []
    for key in sorted(set(state) | set(config)):
        if key in config:
            a, b = _canon(state.get(key), key in _SET_FIELDS), _canon(config[key], key in _SET_FIELDS)
            if a != b:
                changed.append(key)
        elif key in _READ_BACK_NOT_COMPUTED and state.get(key) not in (None, 0, "", {}, []):
            changed.append(key)
    return changed


def _without(value: Any, path: list[str]) -> Any:
    """`value` with the key at `path` (dotted, through objects and each item of a list) taken out."""
    if not path:
        return value
    if isinstance(value, list):
        return [_without(v, path) for v in value]
    if not isinstance(value, dict) or path[0] not in value:
        return value
    if len(path) == 1:
        return {k: v for k, v in value.items() if k != path[0]}
    return {**value, path[0]: _without(value[path[0]], path[1:])}


def _zero(value: Any) -> bool:
    if isinstance(value, bool):
        return value is False
    if isinstance(value, (int, float)):
        return value == 0
    return value in (None, "", [], {})


def _pruned(value: Any) -> Any:
    """Zero values dropped, however deep: the SDK diffs a list or set by its count first ("#": 0 against an
    absent one is no change, terraform-plugin-sdk helper/schema/schema.go diffList), and reads an unset
    string, number or bool as its zero value, so "", 0 and false against an unset one are no change either
    (diffString)."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if not _zero(v)}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def service_diff(state: Mapping[str, Any], inputs: Mapping[str, Any], ignored: list[str]) -> list[str]:
    """The docker_service keys whose stored state differs from the new inputs, nested ignored paths left out.
    Only keys the program gives count (`name` is the provider's autoname; auth and converge_config are never
    read back, KW F:136-163, so the state holds what was given)."""
    a, b = dict(state), dict(inputs)
    for path in ignored:
        a, b = _without(a, path.split(".")), _without(b, path.split("."))
    a, b = _pruned(a), _pruned(b)
    return sorted(k for k in b if _canon(a.get(k)) != _canon(b.get(k)))


def inputs_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    a, b = _canon(dict(old)), _canon(dict(new))
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def provider_diff(
    type_: str, old: Old, new_inputs: Mapping[str, Any], force_new: frozenset[str], ignored: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """(changed keys, keys whose change replaces), as the resource's provider reports them."""
    if type_ == SERVICE:
        changed = service_diff(old.outputs, new_inputs, [p for p in ignored or [] if "." in p])
        return changed, [k for k in changed if k in force_new]
    if type_ == CONTAINER:
        changed = container_diff(old.outputs, new_inputs)
        return changed, [k for k in changed if k in force_new]
    if type_ in (REMOTE_IMAGE, NETWORK, VOLUME):
        changed = inputs_diff(old.inputs, new_inputs)
        return changed, [k for k in changed if k in force_new]
    if type_ == IMAGE:
        changed = inputs_diff(old.inputs, new_inputs)
        if changed == ["registry"]:  # PD provider.go:330-347: only a new `server` counts, not the login
            server = lambda i: (i.get("registry") or {}).get("server")  # noqa: E731
            changed = [] if server(old.inputs) == server(new_inputs) else changed
        return changed, []
    if type_ in (REMOTE_COMMAND, LOCAL_COMMAND):
        changed = inputs_diff(old.inputs, new_inputs)
        return changed, [k for k in changed if k == "triggers"]
    if type_ == DOCKER_PROVIDER:
        return inputs_diff(old.inputs, new_inputs), []
    raise ValueError(f"no diff rule for {type_}")


def _covers(path: str, key: str) -> bool:
    return path in ("*", key) or path.split(".", 1)[0] == key


def decide(type_: str, old: Old | None, new_inputs: Mapping[str, Any], options: Mapping[str, Any], force_new: frozenset[str]) -> Decision:
    if old is None:
        return Decision("create")
    ignored = set(options.get("ignoreChanges") or [])
    changed, replaces = provider_diff(type_, old, new_inputs, force_new, sorted(ignored))
    changed = [k for k in changed if k not in ignored]
    replaces = [k for k in replaces if k not in ignored]
    on_changes = list(options.get("replaceOnChanges") or [])
    replaces += [k for k in changed if k not in replaces and any(_covers(p, k) for p in on_changes)]
    if old.init_errors and any(p in ("*", "#initerror") for p in on_changes):
        replaces.append("#initerror")
    if replaces:
        provider_says = type_ in PROVIDER_DELETES_FIRST
        dbr = (
            bool(options.get("deleteBeforeReplace"))
            if options.get("deleteBeforeReplaceDefined") or options.get("deleteBeforeReplace")
            else provider_says
        )
        return Decision("replace", dbr, tuple(changed), tuple(replaces))
    if changed:
        return Decision("update", changed=tuple(changed))
    if old.init_errors:
        return Decision("adopt")
    return Decision("same")
