"""The Docker Engine API over the connection the docker provider opens.

ssh://user@host:port: docker/cli's connection helper (v28.5.2 cli/connhelper/connhelper.go:38-98,
ssh/ssh.go:103-183), which pulumi-docker and kreuzwerker both use, runs

    ssh -l USER -p PORT <sshOpts...> [-o ConnectTimeout=30] -T -- HOST "docker system dial-stdio"

with `-o ConnectTimeout=30` only when no ssh option mentions ConnectTimeout, the remote command
as one argument, and the environment of the pulumi process (commandconn.go:48-55): its
SSH_AUTH_SOCK is the agent ssh logs in with. unix:///path: the socket.

The API version is negotiated with the daemon, as the provider's client does: the daemon's own
version, at most the client's (docker/docker client v28.5.2 speaks up to 1.51).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

CLIENT_MAX_API = (1, 51)


class DockerAPIError(RuntimeError):
    """The daemon could not be reached, or answered with an error."""


def connhelper_argv(url: str, ssh_opts: list[str]) -> list[str]:
    m = re.match(r"^ssh://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/]+)(?::(?P<port>\d+))?/?$", url)
    if not m:
        raise DockerAPIError(f"cannot parse docker host {url!r}")
    argv = ["ssh"]
    if m["user"]:
        argv += ["-l", m["user"]]
    if m["port"]:
        argv += ["-p", m["port"]]
    flags = list(ssh_opts)
    if "ConnectTimeout" not in "".join(flags):
        flags.append("-o ConnectTimeout=30")
    if "-T" not in flags:
        flags.append("-T")
    return [*argv, *flags, "--", m["host"].strip("[]"), "docker system dial-stdio"]


class DockerAPI:
    """One request per connection (Connection: close), as simple as it is robust."""

    def __init__(self, url: str, ssh_opts: list[str] | None = None, env: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.env = dict(env) if env is not None else None
        self.argv: list[str] | None = None
        self.socket_path: str | None = None
        self._version: str | None = None
        self._lock = threading.Lock()
        if url.startswith("ssh://"):
            self.argv = connhelper_argv(url, ssh_opts or [])
        elif url.startswith("unix://"):
            self.socket_path = url[len("unix://") :]
        else:
            raise DockerAPIError(f"docker host {url!r}: only ssh:// and unix:// are supported here")

    @property
    def is_ssh(self) -> bool:
        return self.argv is not None

    def _open(self, timeout: float) -> tuple[socket.socket, subprocess.Popen[bytes] | None]:
        if self.socket_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(self.socket_path)
            except OSError as exc:
                sock.close()
                raise DockerAPIError(f"cannot connect to {self.url}: {exc}") from exc
            return sock, None
        assert self.argv is not None
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(self.argv, stdin=theirs, stdout=theirs, stderr=subprocess.PIPE, env=self.env, start_new_session=True)
        theirs.close()
        ours.settimeout(timeout)
        return ours, proc

    def version(self) -> str:
        """The API version to speak: the daemon's, at most the client's."""
        with self._lock:
            if self._version is None:
                _, data = self._raw("GET", "/version", None, {}, 30)
                if not isinstance(data, dict) or "ApiVersion" not in data:
                    raise DockerAPIError(f"{self.url}: no version in the daemon's answer: {str(data)[:300]}")
                server = tuple(int(x) for x in str(data["ApiVersion"]).split("."))
                chosen = min(server, CLIENT_MAX_API)
                self._version = f"v{chosen[0]}.{chosen[1]}"
            return self._version

    def ping(self) -> None:
        status, data = self._raw("GET", "/_ping", None, {}, 30)
        if status != 200:
            raise DockerAPIError(f"{self.url}: _ping answered HTTP {status}: {data}")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> tuple[int, Any]:
        """(status, decoded JSON body, or text; a JSON-lines stream becomes a list)."""
        url = f"/{self.version()}{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return self._raw(method, url, body, headers or {}, timeout)

    def _raw(self, method: str, url: str, body: Any, headers: Mapping[str, str], timeout: float) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Host": "docker", "Connection": "close", **headers}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        sock, proc = self._open(timeout)
        conn = http.client.HTTPConnection("docker", timeout=timeout)
        conn.sock = sock
        try:
            conn.request(method, url, body=data, headers=hdrs)
            response = conn.getresponse()
            raw = response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            stderr = ""
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.kill()
                    stderr = proc.communicate(timeout=5)[1].decode(errors="replace")
            raise DockerAPIError(f"{method} {url} via {self.url}: {type(exc).__name__}: {exc}; {stderr.strip()[-800:]}") from exc
        finally:
            conn.close()
            sock.close()
            if proc is not None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
                if proc.stderr:
                    proc.stderr.close()
        text = raw.decode(errors="replace")
        if not text.strip():
            return status, None
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            lines = []
            for line in text.splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    lines.append(json.loads(line))
            return status, lines if lines else text

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any) -> Any:
        status, data = self.request(method, path, body, **kwargs)
        if status not in ok:
            message = data.get("message") if isinstance(data, dict) else data
            raise DockerAPIError(f"docker API {method} {path}: HTTP {status}: {message}")
        return data

    def inspect_container(self, ref: str) -> dict[str, Any] | None:
        status, data = self.request("GET", f"/containers/{urllib.parse.quote(ref, safe='')}/json")
        if status == 404:
            return None
        if status != 200:
            raise DockerAPIError(f"inspect container {ref}: HTTP {status}: {data}")
        return data

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        status, data = self.request("GET", f"/images/{urllib.parse.quote(ref, safe='/:@')}/json")
        if status == 404:
            return None
        if status != 200:
            raise DockerAPIError(f"inspect image {ref}: HTTP {status}: {data}")
        return data
