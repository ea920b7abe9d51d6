"""How the program reaches an ssh:// Docker host, with no file written and nothing left behind.

Two SSH clients reach the host, and each is given what it needs in its own way:

- The docker provider runs the system `ssh` through docker/cli's connection helper,
  as `ssh -l USER -p PORT <sshOpts...> -o ConnectTimeout=30 -T -- HOST docker system
  dial-stdio` (docker/cli v28.5.2 cli/connhelper/connhelper.go:38-98, ssh/ssh.go:103-161;
  the timeout only when sshOpts name none), in the environment of the pulumi process.
  Its options (`docker_ssh_options`) name no file: the pinned host key travels inline,
  printed by `KnownHostsCommand` (OpenSSH 8.5 or newer), and the login key is the one
  the ssh agent of the pulumi process holds (SSH_AUTH_SOCK).
- pulumi-command dials with Go's x/crypto/ssh: the key inline (connection.privateKey),
  the host key pinned (connection.hostKey); it also offers the agent's keys when
  SSH_AUTH_SOCK is set (pulumi-command v1.2.1 provider/pkg/provider/remote/connection.go).

Why no file: `pulumi up --refresh`, `pulumi refresh` and `pulumi destroy` read every
container before the program runs, with the provider configuration stored in the
state (pulumi/pulumi pkg/resource/deploy/deployment_executor.go:167-175,
deployment.go:712-743). Options that pointed at a key file only a run of the program
wrote failed on every fresh CI runner and every laptop after a reboot. Options that
name nothing work wherever the agent holds the key.

The program puts the key into that agent (`load_deploy_key`, with `ssh-add -t`, for
an hour): it is held in the agent's memory, never in a file. With no agent the
program stops before registering anything, saying how to start one; `make` starts
one for the length of each command, the workflows one per job.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

from components.config import HostConfig

# How long the agent keeps the key (ssh-add -t): longer than any update, shorter than a working day.
KEY_LIFETIME_S = 3600


class AgentError(RuntimeError):
    """The deploy key could not be handed to an ssh agent; raised before anything is registered."""


def known_hosts_line(host: HostConfig) -> str:
    """The pinned line without any trailing comment: names, key type, key."""
    assert host.known_hosts is not None  # validated by config for ssh:// hosts
    return " ".join(host.known_hosts.split()[:3])


def docker_ssh_options(host: HostConfig) -> list[str]:
    """The docker provider's ssh options: this host key only, no prompt, no file named."""
    return [
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "GlobalKnownHostsFile=/dev/null",
        # ssh reads the pinned key from the command's output (the line has no '%' for ssh to expand)
        "-o", f"KnownHostsCommand=/bin/echo {known_hosts_line(host)}",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=15",
    ]  # fmt: skip


def no_agent_message(host: HostConfig) -> str:
    return (
        f"host.url is {host.url}: the docker provider logs in with the keys of the ssh agent named by SSH_AUTH_SOCK,"
        " and none is set. Run through make (`make deploy STACK=<stack>` starts an agent for the command), or start"
        ' one first: eval "$(ssh-agent -s)". cutover puts sshPrivateKey into it for an hour; it is never written to a file.'
    )


def load_deploy_key(host: HostConfig, env: Mapping[str, str] | None = None, lifetime_s: int = KEY_LIFETIME_S) -> None:
    """Hand sshPrivateKey to the agent at SSH_AUTH_SOCK (`ssh-add -t LIFETIME -`, the key on stdin)."""
    if not host.is_ssh or host.private_key is None:
        return
    environ = dict(os.environ if env is None else env)
    socket = environ.get("SSH_AUTH_SOCK", "")
    if not socket:
        raise AgentError(no_agent_message(host))
    key = host.private_key.reveal()
    try:
        added = subprocess.run(
            ["ssh-add", "-t", str(lifetime_s), "-"],
            input=key if key.endswith("\n") else key + "\n",
            capture_output=True,
            text=True,
            env=environ,
            timeout=30,
            check=False,
        )
    except FileNotFoundError:
        raise AgentError("ssh-add is not installed: install the OpenSSH client (it also runs the docker provider's ssh)") from None
    except subprocess.TimeoutExpired:
        raise AgentError(f"ssh-add did not answer within 30s (the agent at SSH_AUTH_SOCK={socket})") from None
    if added.returncode != 0:
        said = added.stderr.strip().splitlines()
        raise AgentError(
            f"ssh-add could not give sshPrivateKey to the agent at SSH_AUTH_SOCK={socket}: {said[-1] if said else 'exit ' + str(added.returncode)}"
        )
