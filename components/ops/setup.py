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
import json
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

from components.config.model import SSH_URL, known_hosts_name
from components.host.containers import LOG_OPTS
from components.host.ssh import fingerprint
from components.ops.remote import OpsError

# /etc/docker/daemon.json on a fresh server: live-restore (README "Keeping containers up while the engine restarts")
# and, as every container's default, the log rotation cutover gives its own
DAEMON_OPTIONS = {"live-restore": True, "log-driver": "json-file", "log-opts": LOG_OPTS}
SCRIPT = Path(__file__).resolve().parent.parent / "host" / "setup.sh"
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Target:
    """Where setup logs in: user, host (an address or a name), port."""

    user: str
    host: str
    port: int

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
    target = Target(user=user, host=parts.hostname, port=port)
    # the host.url printed at the end must be one the stack's config takes
    if not SSH_URL.match(target.url_for(user)):
        raise OpsError(f"HOST={value!r}: the host is not a name or address host.url takes; {expected}")
    return target


def read_public_key(path: str) -> str:
    """KEY=: the deploy user's public key, one line `type base64 [comment]`."""
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise OpsError(f"KEY={path!r}: no such file; expected the deploy key's public half, e.g. ~/.ssh/id_ed25519.pub")
    text = file.read_text(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    words = lines[0].split() if len(lines) == 1 else []
    if len(words) < 2 or words[0] not in KEY_TYPES:
        what = "a private key" if "PRIVATE KEY" in text else "not one public key line"
        raise OpsError(f"KEY={path!r}: {what}; expected one line '<type> <key> [comment]' of type {', '.join(KEY_TYPES)} (the .pub file)")
    return " ".join(words[:3])


def check_user(name: str) -> str:
    if name == "root" or not USER_NAME.fullmatch(name):
        raise OpsError(f"DEPLOY_USER={name!r}: expected a login name other than root (lowercase letters, digits, - and _), e.g. deploy")
    return name


def ssh_argv(target: Target, known_hosts: Path, deploy_user: str, key: str) -> list[str]:
    """The ssh command that runs setup.sh (read from stdin) on the server, as root, with its arguments: the deploy
    user, its key and the engine's options. Options as ssh_config(5) describes them: accept-new adds the key of
    a host the file does not hold yet and refuses a changed one; HostKeyAlgorithms makes the server prove the
    ed25519 key, the one pinned afterwards."""
    as_root = "sh -s --" if target.user == "root" else "sudo -n sh -s --"
    options = [
        "-o", "BatchMode=yes",  # never a password prompt: a login key is expected, as for the deploys
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", "HostKeyAlgorithms=ssh-ed25519",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "HashKnownHosts=no",  # the file is read back below: the host's name in clear
        "-o", "ConnectTimeout=30",
        "-o", "LogLevel=ERROR",  # not "Permanently added ... to the list of known hosts": that list is removed after
    ]  # fmt: skip
    remote = f"{as_root} {shlex.quote(deploy_user)} {shlex.quote(key)} {shlex.quote(json.dumps(DAEMON_OPTIONS))}"
    return ["ssh", *options, "-T", "-l", target.user, "-p", str(target.port), "--", target.host, remote]


def pinned_line(target: Target, output: str) -> str:
    """The host key line for `host.knownHosts`, from the key setup.sh printed (`host-key: <type> <key>`)."""
    found = re.findall(r"^host-key: (ssh-ed25519 [A-Za-z0-9+/=]+)$", output, flags=re.MULTILINE)
    if not found:
        raise OpsError(f"on {target.host}: setup printed no ed25519 host key")
    return f"{known_hosts_name(target.host, target.port)} {found[-1]}"


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
        print(report(target, deploy_user, line, f"{line.split()[-2]} {fingerprint(line.split()[-1])}"))
    except (OpsError, OSError, subprocess.TimeoutExpired) as error:
        print(f"cutover: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
