"""The e2e tests run only where a Docker engine answers.

Without one they are skipped, saying why; with CUTOVER_REQUIRE_E2E=1 (CI) they
fail instead, so a broken CI machine can never pass by skipping. Numbers the
scenarios measure are collected here, printed as a table at the end of the
run and written to .cache/e2e-results.json (the benchmark cites that file).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import infra

RESULTS_PATH = infra.CACHE_DIR / "e2e-results.json"
_RESULTS: dict[str, Any] = {}


def required() -> bool:
    return os.environ.get("CUTOVER_REQUIRE_E2E") == "1"


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail with it when the e2e tests are required."""
    if required():
        pytest.fail(f"CUTOVER_REQUIRE_E2E=1 and the e2e environment is not usable: {reason}", pytrace=False)
    pytest.skip(reason)


def engine_problem() -> str | None:
    """None when a Docker engine answers, otherwise why not."""
    if shutil.which("docker") is None:
        return "no Docker engine: the docker CLI is not installed (apt-get install -y docker.io)"
    try:
        infra.ensure_engine(start=False, timeout=10)
    except infra.InfraError as exc:
        detail = str(exc).rsplit("stderr:", 1)[-1].strip().splitlines()
        why = detail[-1] if detail else "no answer"
        return f"no Docker engine answers (`docker version`: {why}); start one: nohup dockerd >/tmp/dockerd.log 2>&1 &"
    return None


def tools_problem(*tools: str, root: bool = False) -> str | None:
    missing = [t for t in tools if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]
    if missing:
        return f"missing tools {missing} (apt-get install -y docker-registry apache2-utils openssh-server openssh-client debootstrap)"
    if root and os.geteuid() != 0:
        return "needs root (it runs sshd for a deploy user and builds base images with debootstrap)"
    return None


@pytest.fixture(scope="session", autouse=True)
def docker_engine() -> infra.Engine:
    """Every test in tests/e2e needs an engine: skip (or fail, when required) without one."""
    problem = engine_problem()
    if problem:
        unavailable(problem)
    return infra.ensure_engine(start=False)


def may_restart_dockerd() -> str | None:
    """None when the e2e run may restart the local dockerd (the machine is ours to disturb:
    CUTOVER_E2E_RESTART_DOCKERD=1, e.g. on a CI runner), otherwise why not."""
    if os.environ.get("CUTOVER_E2E_RESTART_DOCKERD") == "1":
        if os.geteuid() != 0:
            return "restarting dockerd needs root"
        if os.environ.get("DOCKER_HOST", "unix://").split("://")[0] not in ("unix", ""):
            return f"the engine is not local (DOCKER_HOST={os.environ['DOCKER_HOST']})"
        return None
    return (
        "restarting dockerd stops every container on this machine, not only the test's: "
        "set CUTOVER_E2E_RESTART_DOCKERD=1 where that is fine (a CI runner)"
    )


def record(results: dict[str, Any], name: str, numbers: dict[str, Any]) -> None:
    """A scenario's numbers, into the session's results (and the log)."""
    results.setdefault("scenarios", {})[name] = numbers
    infra.log(f"{name}: {numbers}")


@pytest.fixture(scope="session")
def e2e_results() -> Iterator[dict[str, Any]]:
    """Scenario name -> numbers; written to .cache/e2e-results.json at the end of the session."""
    _RESULTS.setdefault("started", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    _RESULTS.setdefault("scenarios", {})
    started = time.monotonic()
    yield _RESULTS
    _RESULTS["session_seconds"] = round(time.monotonic() - started, 1)
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(_RESULTS, indent=2, sort_keys=True) + "\n")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value)
    return str(value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    scenarios = _RESULTS.get("scenarios") or {}
    if not scenarios:
        return
    tr = terminalreporter
    tr.section("cutover e2e: numbers per scenario")
    for key in ("environment", "timings"):
        if _RESULTS.get(key):
            tr.write_line(f"{key}: " + ", ".join(f"{k}={_cell(v)}" for k, v in _RESULTS[key].items()))
    for name, numbers in scenarios.items():
        nested = {k: v for k, v in numbers.items() if isinstance(v, dict) and k != "errors"}
        parts = {f"{name}.{k}": v for k, v in nested.items()} or {name: numbers}
        for label, values in parts.items():
            shown = ", ".join(f"{k}={_cell(v)}" for k, v in values.items() if k not in ("failures",) and not isinstance(v, dict))
            errors = values.get("errors")
            tr.write_line(f"{label}: {shown}" + (f", errors={errors}" if errors else ""))
    tr.write_line(f"(written to {RESULTS_PATH} at the end of the session)")
