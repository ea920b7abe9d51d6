"""Running the program changes nothing on the machine it runs on: not the ssh agent, not the local engine's build
cache, not the checkout. Every process the program starts is recorded, in a preview and in an update."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SSH_KEY, agent_keys, full_config, new_key
from tests.harness import ProgramFailedError, run_program

SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Processes:
    """The commands the program asked `subprocess.run` for, and every process actually started (any API)."""

    asked: list[list[str]] = field(default_factory=list)
    started: list[list[str]] = field(default_factory=list)


def _argv(args: Any) -> list[str]:
    return [str(a) for a in args] if isinstance(args, Sequence) and not isinstance(args, str) else [str(args)]


def _reads_only(argv: list[str]) -> bool:
    """The commands the program may run: ones that only read."""
    if argv[:2] == ["ssh-add", "-L"] or argv[:2] == ["ssh-keygen", "-y"]:
        return True
    # git's reads with optional locks off (tests/test_config.py shows they write nothing under .git)
    return argv[:2] == ["git", "--no-optional-locks"] and argv[2:3] in (["rev-parse"], ["status"])


@pytest.fixture
def processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Processes]:
    """Record every process: `subprocess.run` is answered for git (a clean checkout at SHA) and for any command that
    is not a read (recorded, never run); the reads of the ssh agent run for real. Any other way of starting a process
    goes through Popen._execute_child or os.system, recorded too."""
    seen = Processes()
    real_run = subprocess.run
    real_execute = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def run(args: Any, *rest: Any, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        argv = _argv(args)
        seen.asked.append(argv)
        if argv[:1] == ["git"]:
            out = SHA + "\n" if "rev-parse" in argv else ""
            return subprocess.CompletedProcess(argv, 0, out if kwargs.get("text") else out.encode(), "")
        if not _reads_only(argv):
            return subprocess.CompletedProcess(argv, 0, "", "")
        return real_run(args, *rest, **kwargs)

    def execute_child(self: subprocess.Popen[Any], args: Any, *rest: Any) -> None:
        seen.started.append(_argv(args))
        return real_execute(self, args, *rest)  # type: ignore[no-any-return]

    def system(command: str) -> int:
        seen.started.append([command])
        return 0

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(subprocess.Popen, "_execute_child", execute_child)
    monkeypatch.setattr(os, "system", system)
    yield seen


def prod_with_key(private_key: str) -> tuple[dict[str, Any], set[str]]:
    raw, secrets = full_config()  # everything on, the build cache bound included (image.buildCacheKept)
    return {**raw, "sshPrivateKey": private_key}, secrets


# the checkout's commit comes from git, as on a laptop (neither CUTOVER_GIT_SHA nor GITHUB_SHA set)
FROM_CHECKOUT = {"CUTOVER_GIT_SHA": "", "GITHUB_SHA": ""}


@pytest.fixture
def loaded_agent(agent: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], str, str]:
    """An agent that holds a new deploy key, loaded as make and the workflows load it before pulumi starts."""
    private, public = new_key(tmp_path)
    subprocess.run(["ssh-add", "-q", "-t", "600", "-"], input=private, text=True, env=agent, check=True)
    assert public in agent_keys(agent)
    return agent, private, public


# (the agent fixtures come before `processes`: what they start is not the program's)
@pytest.mark.parametrize("preview", [True, False], ids=["preview", "up"])
def test_the_program_only_reads_the_agent_and_the_checkout(
    loaded_agent: tuple[dict[str, str], str, str], processes: Processes, preview: bool
) -> None:
    agent, private, _ = loaded_agent
    held = agent_keys(agent)
    processes.asked.clear()
    processes.started.clear()

    raw, secrets = prod_with_key(private)
    run = run_program(raw, secrets, stack="prod", env=FROM_CHECKOUT, preview=preview, ssh_agent_env=agent)

    assert run.one("docker:index/image:Image", "app-build").inputs["imageName"].endswith(f":{SHA}"), "the tag is the checkout's commit"
    assert processes.asked, "the program asked git and the agent"
    assert [a for a in processes.asked if not _reads_only(a)] == [], "the program ran a command that is not a read"
    assert {a[0] for a in processes.asked} == {"git", "ssh-add"}
    assert all(a[:1] == ["git"] and a[1] == "--no-optional-locks" for a in processes.asked if a[0] == "git")
    # processes started: the agent's read only (no docker, no ssh-add that loads, no git that writes)
    assert processes.started and all(p[:2] == ["ssh-add", "-L"] for p in processes.started), processes.started
    assert agent_keys(agent) == held, "the agent holds what it held before"
    # the local engine's build cache: its bound is a resource, run by the provider on `pulumi up` only
    cache = run.one("command:local:Command", "app-build-cache")
    assert cache.inputs["create"].startswith("docker builder prune")
    assert not [p for p in processes.started if "docker" in " ".join(p)], "nothing touched the local engine"


@pytest.fixture
def key(tmp_path: Path) -> tuple[str, str]:
    return new_key(tmp_path)


def test_an_agent_without_the_key_stops_the_program_before_anything_is_registered(
    agent: dict[str, str], key: tuple[str, str], processes: Processes
) -> None:
    private, _ = key
    before = agent_keys(agent)
    processes.started.clear()
    raw, secrets = prod_with_key(private)
    with pytest.raises(ProgramFailedError) as failed:
        run_program(raw, secrets, stack="prod", preview=True, ssh_agent_env=agent)
    message = str(failed.value)
    assert "does not hold cutover:sshPrivateKey" in message and f"SSH_AUTH_SOCK={agent['SSH_AUTH_SOCK']}" in message
    assert "pulumi config get sshPrivateKey --stack prod | ssh-add -t 3600 -" in message and "make deploy STACK=prod" in message
    assert private not in message
    assert failed.value.registrations == [], "nothing was registered"
    assert agent_keys(agent) == before, "the agent was left as it was: nothing loaded into it"
    assert all(p[:2] == ["ssh-add", "-L"] for p in processes.started), processes.started


def test_without_an_agent_the_program_says_what_to_run(processes: Processes) -> None:
    """`pulumi preview` by hand in a shell with no agent: one message with the commands to run, nothing started."""
    raw, secrets = full_config()
    with pytest.raises(ProgramFailedError) as failed:
        run_program(raw, secrets, stack="prod", preview=True, ssh_agent_env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"})
    message = str(failed.value)
    assert "cutover:sshPrivateKey" in message and "SSH_AUTH_SOCK" in message and "none is set" in message
    assert 'eval "$(ssh-agent -s)"' in message and "pulumi config get sshPrivateKey --stack prod | ssh-add -t 3600 -" in message
    assert SSH_KEY not in message and failed.value.registrations == []
    assert processes.started == [], "no agent: nothing asked, nothing loaded"
