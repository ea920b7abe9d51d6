"""`make setup HOST=ssh://root@server`: a fresh Debian or Ubuntu server made ready for a first deploy, as `kamal setup`.

    python -m components.ops.setup --host ssh://root@203.0.113.7 [--key ~/.ssh/id_ed25519.pub] [--user deploy]

Over ssh, as root (or a user with passwordless sudo), it runs components/host/setup.sh: the engine's options
(live-restore, log rotation) in /etc/docker/daemon.json, Docker from the distribution, the deploy user in the
docker group logging in with the key. Then it prints the lines that point a stack at the server, with its
host key pinned.

The server is new, so there is no pinned key to check it by yet: the first connection takes the key the
server offers (OpenSSH's StrictHostKeyChecking=accept-new, into a file of its own that is removed afterwards,
never ~/.ssh/known_hosts), and its fingerprint is printed to compare with the one the provider shows. Every
later connection, cutover's, checks that key.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from components.ops.remote import OpsError

SCRIPT = Path(__file__).resolve().parent.parent / "host" / "setup.sh"
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Target:
    """Where setup logs in: user, host (an address or a name), port."""

    user: str
    host: str
    port: int

    def known_hosts_name(self) -> str:
        """The host as a known_hosts line names it (OpenSSH sshd(8) SSH_KNOWN_HOSTS FILE FORMAT: [host]:port
        for a port other than 22), which is the form `host.knownHosts` takes."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def url_for(self, user: str) -> str:
        """The stack's `host.url` for the deploy user."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{user}@{host}" + ("" if self.port == 22 else f":{self.port}")


def parse_target(value: str) -> Target:
    """HOST=: ssh://[user@]host[:port], user root unless given."""
    expected = "expected ssh://[user@]host[:port], e.g. ssh://root@203.0.113.7"
    if not value:
        raise OpsError(f"HOST= is missing: {expected}")
    parts = urlsplit(value)
    try:
        port = parts.port or 22
    except ValueError:
        raise OpsError(f"HOST={value!r}: the port is not a number from 1 to 65535; {expected}") from None
    if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
        raise OpsError(f"HOST={value!r}: {expected}")
    user = parts.username or "root"
    if not USER_NAME.fullmatch(user):
        raise OpsError(f"HOST={value!r}: user {user!r} is not a login name; {expected}")
    return Target(user=user, host=parts.hostname, port=port)


def read_public_key(path: str) -> str:
    """KEY=: the deploy user's public key, one line `type base64 [comment]`."""
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise OpsError(f"KEY={path!r}: no such file; expected the deploy key's public half, e.g. ~/.ssh/id_ed25519.pub")
    lines = [line.strip() for line in file.read_text(errors="replace").splitlines() if line.strip()]
    words = lines[0].split() if len(lines) == 1 else []
    if len(words) < 2 or words[0] not in KEY_TYPES:
        what = "a private key" if "PRIVATE KEY" in file.read_text(errors="replace") else "not one public key line"
        raise OpsError(f"KEY={path!r}: {what}; expected one line '<type> <key> [comment]' of type {', '.join(KEY_TYPES)} (the .pub file)")
    return " ".join(words[:3])


def check_user(name: str) -> str:
    if name == "root" or not USER_NAME.fullmatch(name):
        raise OpsError(f"DEPLOY_USER={name!r}: expected a login name other than root (lowercase letters, digits, - and _), e.g. deploy")
    return name


def ssh_argv(target: Target, known_hosts: Path, deploy_user: str, key: str) -> list[str]:
    """The ssh command that runs setup.sh (read from stdin) on the server, as root."""
    as_root = "sh -s --" if target.user == "root" else "sudo -n sh -s --"
    options = [
        "-o", "BatchMode=yes",  # never a password prompt: a login key is expected, as for the deploys
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", "HostKeyAlgorithms=ssh-ed25519",  # the key made and offered is the one printed and pinned
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "HashKnownHosts=no",  # the file is read back below: the host's name in clear
        "-o", "ConnectTimeout=30",
        "-o", "LogLevel=ERROR",  # not "Permanently added ... to the list of known hosts": that list is removed after
    ]  # fmt: skip
    remote = f"{as_root} {shlex.quote(deploy_user)} {shlex.quote(key)}"
    return ["ssh", *options, "-T", "-l", target.user, "-p", str(target.port), "--", target.host, remote]


def pinned_line(target: Target, output: str) -> str:
    """The host key line for `host.knownHosts`, from the key setup.sh printed (`host-key: <type> <key>`)."""
    found = re.findall(r"^host-key: (ssh-ed25519 [A-Za-z0-9+/=]+)$", output, flags=re.MULTILINE)
    if not found:
        raise OpsError(f"on {target.host}: setup printed no ed25519 host key")
    return f"{target.known_hosts_name()} {found[-1]}"


def check_same_key(line: str, accepted: str) -> None:
    """The key the server's file holds is the one the connection was made with (accept-new recorded it)."""
    offered = {" ".join(entry.split()[1:3]) for entry in accepted.splitlines() if entry.strip()}
    if " ".join(line.split()[1:3]) not in offered:
        raise OpsError(
            "the server's /etc/ssh/ssh_host_ed25519_key.pub is not the key it offered on this connection: "
            "something between you and the server answered; nothing to pin"
        )


def report(target: Target, deploy_user: str, line: str, fingerprint: str) -> str:
    """What to run next: the stack's host.url and its pinned key."""
    return "\n".join(
        [
            f"The server is ready. Its host key: {fingerprint}",
            "Compare it with the one your provider shows for the server, then point a stack at it:",
            "",
            f"  pulumi config set --path host.url {target.url_for(deploy_user)}",
            f"  pulumi config set --path host.knownHosts {shlex.quote(line)}",
            f"  pulumi config set --secret sshPrivateKey < <the private half of the key {deploy_user} logs in with>",
        ]
    )


def fingerprint_of(line: str) -> str:
    done = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=line + "\n", capture_output=True, text=True, check=False)
    return done.stdout.strip() or line.split()[-1]


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.ops.setup", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="", help="ssh://[user@]host[:port], as root or a user with passwordless sudo")
    parser.add_argument("--key", default="~/.ssh/id_ed25519.pub", help="the deploy user's public key")
    parser.add_argument("--user", default="deploy", help="the deploy user to create")
    args = parser.parse_args(argv)
    environ = dict(os.environ if env is None else env)
    try:
        # every argument is checked before the server is reached
        target = parse_target(args.host)
        key = read_public_key(args.key)
        deploy_user = check_user(args.user)
        with tempfile.TemporaryDirectory(prefix="cutover-setup-") as tmp:
            known_hosts = Path(tmp) / "known_hosts"
            done = subprocess.run(
                ssh_argv(target, known_hosts, deploy_user, key), input=SCRIPT.read_text(), text=True,
                capture_output=True, env=environ, timeout=1800, check=False,
            )  # fmt: skip
            sys.stderr.write(done.stderr)
            print(done.stdout, end="")
            if done.returncode != 0:
                raise OpsError(f"setup on {target.host} stopped (exit {done.returncode}); what it said is above")
            line = pinned_line(target, done.stdout)
            check_same_key(line, known_hosts.read_text() if known_hosts.exists() else "")
        print(report(target, deploy_user, line, fingerprint_of(line)))
    except (OpsError, OSError, subprocess.TimeoutExpired) as error:
        print(f"cutover: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
