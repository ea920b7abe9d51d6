"""Check captured registrations against the providers' real Pulumi schemas.

A schema comes from, in this order:
- .cache/provider-schemas/<provider>-<version>.json, kept from an earlier run;
- `pulumi package get-schema <provider>@<version>` where the CLI has that provider's plugin (the
  version is the one requirements.txt pins for its SDK); the answer is kept in .cache;
- the folder CUTOVER_PROVIDER_SCHEMAS names (<provider>.json), for machines where the plugins
  cannot be had (.ci/run names one when it finds it).
Without any of them the schema checks are skipped, saying why (CUTOVER_REQUIRE_E2E=1: they fail).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT, Registration

CACHE_DIR = ROOT / ".cache" / "provider-schemas"
PROVIDER_META_INPUTS = {"version", "pluginDownloadURL"}


def pinned_version(package: str) -> str:
    """The version requirements.txt pins for pulumi-<package>."""
    found = re.search(rf"^pulumi-{re.escape(package)}==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    if found is None:
        raise LookupError(f"requirements.txt pins no pulumi-{package}")
    return found.group(1)


def _from_cli(package: str, version: str) -> str | None:
    if shutil.which("pulumi") is None:
        return None
    env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"}
    out = subprocess.run(["pulumi", "package", "get-schema", f"{package}@{version}"], capture_output=True, text=True, env=env, timeout=120)
    return out.stdout if out.returncode == 0 else None


@functools.cache
def load_schema(package: str) -> dict[str, Any]:
    version = pinned_version(package)
    cached = CACHE_DIR / f"{package}-{version}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    text = _from_cli(package, version)
    if text is not None:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        cached.write_text(text)
        return json.loads(text)
    folder = os.environ.get("CUTOVER_PROVIDER_SCHEMAS")
    if folder and (Path(folder) / f"{package}.json").exists():
        return json.loads((Path(folder) / f"{package}.json").read_text())
    reason = (
        f"no schema for {package} {version}: none in {cached}, no pulumi CLI with the {package} plugin, "
        f"and CUTOVER_PROVIDER_SCHEMAS names no folder with {package}.json"
    )
    if os.environ.get("CUTOVER_REQUIRE_E2E") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def _type_name(spec: dict[str, Any]) -> str:
    return spec.get("$ref") or spec.get("type") or "any"


def check_value(schema: dict[str, Any], spec: dict[str, Any], value: Any, path: str) -> list[str]:
    """Problems with `value` against a property spec (type, items, additionalProperties or $ref)."""
    if value is None:
        return []
    ref = spec.get("$ref")
    if ref:
        if ref.startswith("pulumi.json#/"):
            return []
        token = ref.removeprefix("#/types/")
        typ = schema["types"].get(token)
        if typ is None:
            return [f"{path}: schema has no type {token}"]
        if "enum" in typ:
            allowed = [e["value"] for e in typ["enum"]]
            return [] if value in allowed else [f"{path}: {value!r} is not one of {allowed}"]
        return check_object(schema, typ, value, path)
    kind = spec.get("type")
    if kind == "string":
        return [] if isinstance(value, str) else [f"{path}: expected string, got {type(value).__name__} {value!r}"]
    if kind == "integer":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())
        return [] if ok else [f"{path}: expected integer, got {value!r}"]
    if kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected number, got {value!r}"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: expected boolean, got {value!r}"]
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected array, got {value!r}"]
        return [p for i, v in enumerate(value) for p in check_value(schema, spec.get("items", {}), v, f"{path}[{i}]")]
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected object, got {value!r}"]
        inner = spec.get("additionalProperties", {})
        return [p for k, v in value.items() for p in check_value(schema, inner, v, f"{path}.{k}")]
    return []


def check_object(schema: dict[str, Any], typ: dict[str, Any], value: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object of {sorted(typ.get('properties', {}))}, got {value!r}"]
    props = typ.get("properties", {})
    problems = [f"{path}.{k}: unknown property (known: {sorted(props)})" for k in value if k not in props]
    problems += [f"{path}.{k}: required property missing" for k in typ.get("required", []) if value.get(k) is None]
    for k, v in value.items():
        if k in props:
            problems += check_value(schema, props[k], v, f"{path}.{k}")
    return problems


def check_registration(reg: Registration) -> list[str]:
    """Every problem of one registered resource against its provider's schema ([] when it conforms)."""
    if reg.type.startswith("pulumi:providers:"):
        package = reg.type.split(":")[2]
        schema = load_schema(package)
        spec = schema["provider"]
        inputs = {k: v for k, v in reg.inputs.items() if k not in PROVIDER_META_INPUTS}
        inputs = {k: _decode_provider_value(spec.get("inputProperties", {}).get(k, {}), v) for k, v in inputs.items()}
        typ = {"properties": spec.get("inputProperties", {}), "required": spec.get("requiredInputs", [])}
        return check_object(schema, typ, inputs, reg.name)
    package = reg.type.split(":")[0]
    schema = load_schema(package)
    resource = schema["resources"].get(reg.type)
    if resource is None:
        return [f"{reg.name}: {reg.type} is not a resource of the {package} provider"]
    typ = {"properties": resource.get("inputProperties", {}), "required": resource.get("requiredInputs", [])}
    return check_object(schema, typ, reg.inputs, f"{reg.name} ({reg.type})")


def _decode_provider_value(spec: dict[str, Any], value: Any) -> Any:
    """Provider config travels with non-string values JSON-encoded."""
    if isinstance(value, str) and _type_name(spec) != "string":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def is_provider_resource(reg: Registration) -> bool:
    return (reg.custom and reg.type.split(":")[0] in ("docker", "command", "github")) or reg.type.startswith("pulumi:providers:")
