"""`make tools` builds the pulumi CLI from its Go modules at the pinned version, once."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.harness import ROOT

TOOLCHAIN = ROOT / "toolchain"
BUILT = ROOT / ".tools" / "bin" / "pulumi"


def pinned_cli() -> str:
    found = re.search(r"^\s*github\.com/pulumi/pulumi/pkg/v3 (v\S+)", (TOOLCHAIN / "go.mod").read_text(), re.MULTILINE)
    assert found, "toolchain/go.mod requires no github.com/pulumi/pulumi/pkg/v3"
    return found.group(1)


def pinned_sdk() -> str:
    found = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert found, "requirements.txt pins no pulumi"
    return found.group(1)


def built() -> None:
    if not BUILT.exists():
        if os.environ.get("CUTOVER_REQUIRE_E2E") == "1":
            pytest.fail("CUTOVER_REQUIRE_E2E=1 and make tools has not built .tools/bin/pulumi", pytrace=False)
        pytest.skip("make tools has not built .tools/bin/pulumi")


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.lstrip("v").split("."))


def test_the_cli_is_no_older_than_the_sdk_the_program_uses() -> None:
    # the Automation API and the language runtime expect a CLI at least as new as the SDK
    assert version_tuple(pinned_cli()) >= version_tuple(pinned_sdk())


def test_the_wrapper_module_copies_the_replaces_the_cli_publishes() -> None:
    """The go command ignores a dependency's replace lines (pkg/v3 and sdk/v3 publish two): they are repeated."""
    gomod = (TOOLCHAIN / "go.mod").read_text()
    assert "replace github.com/atotto/clipboard => github.com/tgummerer/clipboard" in gomod
    assert "replace golang.org/x/text => golang.org/x/text" in gomod
    assert "tool github.com/pulumi/pulumi/pkg/v3/cmd/pulumi" in gomod


def test_the_built_cli_reports_the_pinned_version() -> None:
    built()
    out = subprocess.run(
        [str(BUILT), "version"], capture_output=True, text=True, timeout=60, env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    )
    assert out.returncode == 0 and out.stdout.strip() == pinned_cli()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_second_make_tools_builds_nothing_and_says_so_in_one_line() -> None:
    built()
    before = BUILT.stat().st_mtime_ns
    out = subprocess.run(["make", "--no-print-directory", "tools"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == [f"tools: {ROOT}/.tools/bin/pulumi {pinned_cli()} is up to date, nothing built"]
    assert BUILT.stat().st_mtime_ns == before
