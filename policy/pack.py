"""The policy pack: pulumi-policy's ResourceValidationPolicy for each rule of policy/rules.py.

Importing this module starts nothing. `PolicyPack(...)` serves the analyzer's gRPC API and never
returns (pulumi/pulumi-policy sdk/python/lib/pulumi_policy/policy.py `PolicyPack.__init__` starts
the server, prints its port and sleeps), so only `serve()`, called by policy/__main__.py, builds it.

Per-stack settings: `policy/stacks/<stack>.json`, in the format of `pulumi preview
--policy-pack-config` (`{"rule-name": "disabled"}` or `{"rule-name": {"enforcementLevel":
"advisory"}}`), becomes the pack's initial config for that stack. The engine applies a pack's
initial config and lets a `--policy-pack-config` file override it (pulumi/pulumi
pkg/engine/update.go, `ReconcilePolicyPackConfig(analyzerInfo.Policies, initialConfig,
configFromFile)`); the stack's name is in PULUMI_STACK when the pack starts
(sdk/python/cmd/pulumi-language-python/main.go `RunPlugin`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from pulumi_policy import EnforcementLevel, PolicyPack, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

# Raised by the analyzer's input proxies when an input is unknown during a preview
# (pulumi-policy sdk/python/lib/pulumi_policy/proxy.py `_raise_if_unknown`).
from pulumi_policy.proxy import UnknownValueError

from policy.rules import RULES, UNKNOWN, Resource, Rule, StackFacts

PACK_NAME: Final = "cutover-guardrails"
STACKS_DIR: Final = Path(__file__).resolve().parent / "stacks"
LEVELS: Final = {level.value: level for level in EnforcementLevel}


def plain(value: Any) -> Any:
    """The analyzer's inputs (read-only proxies that raise on an unknown value) as plain data, an unknown
    value as UNKNOWN. Only the Mapping and Sequence protocols the proxies implement are used."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in value:
            try:
                out[key] = plain(value[key])
            except UnknownValueError:
                out[key] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items: list[Any] = []
        for i in range(len(value)):
            try:
                items.append(plain(value[i]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


@lru_cache(maxsize=8)
def _facts(config_json: str, stack: str) -> StackFacts:
    config = json.loads(config_json) if config_json else {}
    return StackFacts.from_config(config if isinstance(config, dict) else {}, stack)


def stack_facts(environ: Mapping[str, str] | None = None) -> StackFacts:
    """The stack's config as the analyzer process gets it: PULUMI_CONFIG (secrets decrypted), PULUMI_STACK."""
    env = os.environ if environ is None else environ
    return _facts(env.get("PULUMI_CONFIG", ""), env.get("PULUMI_STACK", ""))


def resource_of(args: ResourceValidationArgs) -> Resource:
    return Resource(args.resource_type, args.name, plain(args.props), args.opts.delete_before_replace)


def validator(rule: Rule) -> Any:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule.check(resource_of(args), stack_facts()):
            report_violation(message, None)

    validate.__name__ = f"validate_{rule.name.replace('-', '_')}"
    return validate


def level(rule: Rule) -> EnforcementLevel:
    return EnforcementLevel.MANDATORY if rule.mandatory else EnforcementLevel.ADVISORY


POLICIES: Final[list[ResourceValidationPolicy]] = [
    ResourceValidationPolicy(name=rule.name, description=rule.description, enforcement_level=level(rule), validate=validator(rule))
    for rule in RULES
]


def stack_settings(stack: str, directory: Path = STACKS_DIR) -> dict[str, EnforcementLevel]:
    """`policy/stacks/<stack>.json` as the pack's initial config; every problem at once, naming the key."""
    path = directory / f"{stack}.json"
    if not stack or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: got {data!r}, expected an object of rule name -> enforcement level")
    names = {rule.name for rule in RULES}
    settings: dict[str, EnforcementLevel] = {}
    problems = []
    for key, value in data.items():
        given = value.get("enforcementLevel") if isinstance(value, dict) and set(value) == {"enforcementLevel"} else value
        if key not in names:
            problems.append(f"{path}: {key} = {value!r}: not a rule of this pack; expected one of {sorted(names)}")
        elif given not in LEVELS:
            problems.append(f"{path}: {key} = {value!r}: expected one of {sorted(LEVELS)} (or {{'enforcementLevel': ...}})")
        else:
            settings[key] = LEVELS[given]
    if problems:
        raise ValueError("\n".join(problems))
    return settings


def serve() -> None:  # pragma: no cover - serves until the engine stops it; the tests use POLICIES
    initial: dict[str, Any] = dict(stack_settings(os.environ.get("PULUMI_STACK", "")))
    PolicyPack(name=PACK_NAME, policies=list(POLICIES), enforcement_level=EnforcementLevel.MANDATORY, initial_config=initial or None)
