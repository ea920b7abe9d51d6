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

So the key must be in that agent before `pulumi` starts: the docker provider is a process
of its own that the engine starts with the engine's environment (pulumi/pulumi
sdk/go/common/resource/plugin/plugin.go execPlugin, exec.Command), and nothing the program
does to its own environment reaches it. `make` starts an agent of its own for each command
and loads the key into it (`pulumi config get sshPrivateKey | ssh-add -t 3600 -`), the
workflows do the same once per job; the agent holds it in memory, never in a file, and
forgets it after an hour.

The program itself changes nothing on the machine it runs on, in a preview or an update:
it only asks the agent which keys it holds (`check_deploy_key`: `ssh-add -L`, a read) and,
when the configured key is not among them, stops before registering anything, saying what
to run. `load_deploy_key` is the loading step for the day-to-day commands
(components/ops/), which are not the program.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import subprocess
from collections.abc import Mapping

from components.config.model import HostConfig

# How long the agent keeps the key (ssh-add -t): longer than any update, shorter than a working day.
KEY_LIFETIME_S = 3600


class AgentError(RuntimeError):
    """The deploy key is not in (or could not be handed to) the ssh agent; raised before anything is registered."""


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


def load_command(stack: str) -> str:
    """What loads the stack's deploy key into the agent at SSH_AUTH_SOCK: the key goes from the CLI to ssh-add on a
    pipe, never into a file, a process argument or the terminal. The Makefile and the workflows run the same."""
    return f"pulumi config get sshPrivateKey --stack {shlex.quote(stack)} | ssh-add -t {KEY_LIFETIME_S} -"


def _how_to_fix(stack: str, start_agent: bool = False) -> str:
    first = 'eval "$(ssh-agent -s)", then ' if start_agent else ""
    return (
        f"Run pulumi through make (`make deploy STACK={stack}`, `make preview STACK={stack}`, ...: each starts an ssh agent of its"
        f" own and loads the key into it for the length of the command), or load the key before running pulumi by hand:"
        f" {first}{load_command(stack)}"
    )


def no_agent_message(host: HostConfig, project: str, stack: str) -> str:
    return (
        f"host.url is {host.url}: the docker provider logs in with {project}:sshPrivateKey, from the ssh agent named by"
        f" SSH_AUTH_SOCK, and none is set. The program only checks the agent; it adds nothing to it."
        f" {_how_to_fix(stack, start_agent=True)}"
    )


OPENSSH_KEY = re.compile(r"-----BEGIN OPENSSH PRIVATE KEY-----\n(.*?)\n-----END OPENSSH PRIVATE KEY-----", re.S)


def _openssh_public_blob(text: str) -> bytes | None:
    """The public key stored in the clear at the head of an OpenSSH private key file (PROTOCOL.key: magic,
    cipher, kdf, kdf options, the number of keys, then each public key); None for another format."""
    m = OPENSSH_KEY.search(text.replace("\r\n", "\n"))
    if not m:
        return None
    data = base64.b64decode("".join(m[1].split()), validate=True)
    magic = b"openssh-key-v1\0"
    if not data.startswith(magic):
        raise ValueError("not an openssh-key-v1 key")
    pos = len(magic)

    def take(size: int) -> bytes:
        nonlocal pos
        chunk = data[pos : pos + size]
        if len(chunk) != size:
            raise ValueError("the key ends early")
        pos += size
        return chunk

    def string() -> bytes:
        return take(int.from_bytes(take(4), "big"))

    string(), string(), string()  # cipher, kdf, kdf options
    if int.from_bytes(take(4), "big") < 1:
        raise ValueError("the key holds no key")
    return string()


def public_key(private_key: str, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The public half of `private_key` as `ssh-add -L` lists it: (key type, base64 blob). Read from the key's own
    header for the OpenSSH format; for a PEM key (RSA, ECDSA) by `ssh-keygen -y`, the key on its stdin."""
    try:
        blob = _openssh_public_blob(private_key)
    except (ValueError, TypeError) as error:
        raise AgentError(f"sshPrivateKey: cannot read its public key ({error})") from None
    if blob is not None:
        kind = blob[4 : 4 + int.from_bytes(blob[:4], "big")].decode(errors="replace")
        return kind, base64.b64encode(blob).decode()
    try:
        derived = subprocess.run(
            ["ssh-keygen", "-y", "-f", "/dev/stdin"],
            input=private_key if private_key.endswith("\n") else private_key + "\n",
            capture_output=True,
            text=True,
            env=dict(os.environ if env is None else env),
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        raise AgentError("sshPrivateKey: ssh-keygen could not read its public key (is the OpenSSH client installed?)") from None
    fields = derived.stdout.split()
    if derived.returncode != 0 or len(fields) < 2:
        raise AgentError("sshPrivateKey: ssh-keygen could not read its public key")
    return fields[0], fields[1]


def fingerprint(blob_b64: str) -> str:
    """The key's SHA256 fingerprint as ssh-add -l and ssh-keygen -l print it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(blob_b64)).digest()).decode().rstrip("=")


def check_deploy_key(host: HostConfig, project: str, stack: str, env: Mapping[str, str] | None = None) -> None:
    """Stop (AgentError) unless the agent at SSH_AUTH_SOCK holds sshPrivateKey; it only reads (`ssh-add -L`).

    The docker provider's ssh logs in with the agent's keys; the engine reads the server in a preview too. So an
    agent without the key would fail the first read with "Permission denied": this says so first, and what to run.
    """
    if not host.is_ssh or host.private_key is None:
        return
    environ = dict(os.environ if env is None else env)
    socket = environ.get("SSH_AUTH_SOCK", "")
    if not socket:
        raise AgentError(no_agent_message(host, project, stack))
    kind, blob = public_key(host.private_key.reveal(), environ)
    try:
        listed = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True, env=environ, timeout=30, check=False)
    except FileNotFoundError:
        raise AgentError("ssh-add is not installed: install the OpenSSH client (it also runs the docker provider's ssh)") from None
    except subprocess.TimeoutExpired:
        raise AgentError(f"the ssh agent at SSH_AUTH_SOCK={socket} did not answer within 30s") from None
    # ssh-add -L: 0 with the keys listed, 1 for an agent that holds none, 2 when no agent answers there
    if listed.returncode not in (0, 1):
        said = listed.stderr.strip().splitlines()
        raise AgentError(
            f"no ssh agent answers at SSH_AUTH_SOCK={socket} ({said[-1] if said else 'exit ' + str(listed.returncode)}):"
            f" the docker provider logs in to {host.url} with {project}:sshPrivateKey from it. The program only checks the agent;"
            f" it adds nothing to it. {_how_to_fix(stack, start_agent=True)}"
        )
    held = {line.split()[1] for line in listed.stdout.splitlines() if len(line.split()) >= 2} if listed.returncode == 0 else set()
    if blob not in held:
        raise AgentError(
            f"the ssh agent at SSH_AUTH_SOCK={socket} does not hold {project}:sshPrivateKey ({kind} {fingerprint(blob)}),"
            f" the key the docker provider logs in to {host.url} with. The program only checks the agent; it adds nothing to it."
            f" {_how_to_fix(stack)}"
        )


def load_deploy_key(host: HostConfig, env: Mapping[str, str] | None = None, lifetime_s: int = KEY_LIFETIME_S) -> None:
    """Hand sshPrivateKey to the agent at SSH_AUTH_SOCK (`ssh-add -t LIFETIME -`, the key on stdin).

    For the day-to-day commands (components/ops/); the program never calls it (check_deploy_key)."""
    if not host.is_ssh or host.private_key is None:
        return
    environ = dict(os.environ if env is None else env)
    socket = environ.get("SSH_AUTH_SOCK", "")
    if not socket:
        raise AgentError(
            f"host.url is {host.url}: the deploy key goes to the ssh agent named by SSH_AUTH_SOCK, and none is set. Run"
            ' through make (`make status STACK=<stack>` starts an agent for the command), or start one first: eval "$(ssh-agent -s)".'
            " The key is held in the agent's memory for an hour, never written to a file."
        )
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
