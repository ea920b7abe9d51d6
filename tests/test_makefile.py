"""`make deploy` stops with one clear line when the pulumi CLI or a Docker engine is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def run_make(target: str, path: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=ROOT,
        env={**os.environ, "PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_pulumi_cli_is_one_clear_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash", "make", "docker", "true"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    out = run_make("deploy", str(bin_dir))
    assert out.returncode != 0
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert lines == [
        "cutover: the pulumi CLI is not installed: install it with 'curl -fsSL https://get.pulumi.com | sh' "
        "(see https://www.pulumi.com/docs/install/), then run make deploy again"
    ]
    assert "Traceback" not in out.stdout + out.stderr


def test_missing_docker_engine_is_one_clear_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_pulumi = bin_dir / "pulumi"
    fake_pulumi.write_text("#!/bin/sh\necho pulumi should not run >&2\nexit 99\n")
    fake_pulumi.chmod(0o755)
    out = run_make("deploy", f"{bin_dir}:{os.environ['PATH']}", DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert out.returncode != 0
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cutover: no Docker engine answers: install Docker")
    assert "pulumi should not run" not in out.stderr
