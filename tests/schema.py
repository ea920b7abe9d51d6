"""Check captured registrations against the providers' real Pulumi schemas.

Schemas are read from ../shared/provider-schemas/<provider>.json next to the
project, or, where the Pulumi CLI is installed, from `pulumi package get-schema`.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from typing import Any

from tests.harness import ROOT, Registration

SCHEMA_DIR = ROOT.parent / "shared" / "provider-schemas"
PROVIDER_META_INPUTS = {"version", "pluginDownloadURL"}


@functools.cache
def load_schema(package: str) -> dict[str, Any]:
    path = SCHEMA_DIR / f"{package}.json"
    if path.exists():
        return json.loads(path.read_text())
    if shutil.which("pulumi"):
        out = subprocess.run(["pulumi", "package", "get-schema", package], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)
    raise FileNotFoundError(f"no schema for {package}: neither {path} nor the pulumi CLI is available")


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
