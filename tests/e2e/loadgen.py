"""Steady HTTP load from N threads, with every request recorded.

    gen = LoadGen("http://127.0.0.1:8080/", threads=16)
    gen.start()
    ...                       # deploy, switch, roll back
    result = gen.stop()
    assert result.failed == 0, result.summary()

Each thread sends GETs one after another (keep-alive by default; it
reconnects after an error) with a short per-request timeout. A request is ok
when it answers 200. The JSON body's "version" is recorded, so the result
shows which release answered when. Standard library only; the generator
stops by itself after max_duration seconds.
"""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import json
import socket
import ssl
import threading
import time
from collections import Counter
from typing import Self
from urllib.parse import urlsplit


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    start: float  # seconds since the generator started
    end: float
    status: int | None  # HTTP status, None when the request raised
    error: str | None  # error kind ("connection refused", "http 502", ...)
    detail: str | None  # exception text or start of an error body
    version: str | None  # "version" from the JSON body
    worker: int

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclasses.dataclass(frozen=True)
class VersionSpan:
    version: str | None
    first: float
    last: float
    count: int


@dataclasses.dataclass
class Result:
    records: list[Record]
    duration: float
    # True when the run hit max_duration before stop(): the end of what was
    # measured is not covered
    timed_out: bool = False

    def __post_init__(self) -> None:
        self.records.sort(key=lambda r: (r.end, r.start))

    @property
    def total(self) -> int:
        return len(self.records)

    @property
    def ok(self) -> int:
        return sum(1 for r in self.records if r.ok)

    @property
    def failed(self) -> int:
        """Requests that did not end in a 200."""
        return len(self.failures)

    @property
    def errors(self) -> Counter[str]:
        """Failed requests by error kind."""
        return Counter(r.error or f"http {r.status}" for r in self.failures)

    @property
    def failures(self) -> list[Record]:
        return [r for r in self.records if not r.ok]

    @property
    def rate(self) -> float:
        return self.total / self.duration if self.duration > 0 else 0.0

    @property
    def longest_gap(self) -> float:
        """Longest time (s) without a successful response, counting from the
        start of the run and up to its end."""
        edges = [0.0, *(r.end for r in self.records if r.ok), self.duration]
        edges.sort()
        return max(b - a for a, b in itertools.pairwise(edges)) if len(edges) > 1 else 0.0

    @property
    def versions(self) -> list[VersionSpan]:
        """Versions of successful responses, in order of first appearance."""
        spans: dict[str | None, list[float]] = {}
        counts: Counter[str | None] = Counter()
        for r in self.records:
            if not r.ok:
                continue
            span = spans.setdefault(r.version, [r.end, r.end])
            span[1] = r.end
            counts[r.version] += 1
        return [VersionSpan(v, s[0], s[1], counts[v]) for v, s in spans.items()]

    def summary(self) -> str:
        lines = [
            f"{self.total} requests in {self.duration:.1f}s ({self.rate:.0f}/s): "
            f"{self.ok} ok, {self.failed} failed, longest gap {self.longest_gap:.3f}s"
            + (" (stopped by max_duration)" if self.timed_out else "")
        ]
        for kind, n in self.errors.most_common():
            lines.append(f"  {n:6d} x {kind}")
        for f in self.failures[:10]:
            lines.append(f"  at {f.start:.3f}-{f.end:.3f}s worker {f.worker}: {f.error}: {f.detail}")
        for span in self.versions:
            lines.append(f"  version {span.version}: {span.count} ok, {span.first:.2f}s..{span.last:.2f}s")
        return "\n".join(lines)


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, BrokenPipeError):
        return "broken pipe"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "remote disconnected"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, http.client.HTTPException):
        return f"http protocol: {type(exc).__name__}"
    if isinstance(exc, OSError):
        return f"os error: {exc.strerror or type(exc).__name__}"
    return type(exc).__name__


class LoadGen:
    def __init__(
        self,
        url: str,
        *,
        threads: int = 16,
        timeout: float = 3.0,
        keep_alive: bool = True,
        max_duration: float = 300.0,
        rate: float | None = None,
        headers: dict[str, str] | None = None,
        error_backoff: float = 0.005,
        tls: ssl.SSLContext | None = None,
        connect_to: tuple[str, int] | None = None,
    ) -> None:
        """rate: total requests per second over all threads (None: each
        thread sends its next request as soon as the last one ended).
        error_backoff: pause of a thread after a failed request, so that a
        dead endpoint is not hammered in a busy loop.
        tls: the context https:// URLs are checked with (the system's CAs when None).
        connect_to: the address dialled instead of the URL's, which still names the
        host for TLS (SNI, certificate check) and the Host header."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"url must be http(s)://..., got {url!r}")
        self.url = url
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.threads = threads
        self.timeout = timeout
        self.keep_alive = keep_alive
        self.max_duration = max_duration
        self.interval = threads / rate if rate else 0.0
        self.error_backoff = error_backoff
        self.headers = dict(headers or {})
        self.tls = tls
        self.connect_to = connect_to
        if not keep_alive:
            self.headers["Connection"] = "close"
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._records: list[list[Record]] = []
        self._t0 = 0.0
        self._stopped_at: float | None = None

    # context manager: `with LoadGen(url) as gen: ...; result = gen.stop()`
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        if self._workers:
            raise RuntimeError("already started")
        self._t0 = time.monotonic()
        for i in range(self.threads):
            records: list[Record] = []
            self._records.append(records)
            t = threading.Thread(target=self._run, args=(i, records), name=f"loadgen-{i}", daemon=True)
            self._workers.append(t)
            t.start()
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def snapshot(self) -> Result:
        """Result of the requests finished so far (the run goes on)."""
        records = [r for per_worker in self._records for r in list(per_worker)]
        return Result(records, self.elapsed())

    def stop(self) -> Result:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=self.timeout + 5)
        if self._stopped_at is None:
            self._stopped_at = self.elapsed()
        records = [r for per_worker in self._records for r in per_worker]
        duration = max([min(self._stopped_at, self.max_duration), *(r.end for r in records)])
        return Result(records, duration, timed_out=self._stopped_at > self.max_duration)

    def _connect(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return HTTPSTo(self.host, self.port, dial=self.connect_to, context=self.tls, timeout=self.timeout)
        if self.connect_to:
            return _HTTPTo(self.host, self.port, dial=self.connect_to, timeout=self.timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _run(self, worker: int, records: list[Record]) -> None:
        conn: http.client.HTTPConnection | None = None
        next_at = time.monotonic()
        deadline = self._t0 + self.max_duration
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self.interval:
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_at = max(next_at + self.interval, time.monotonic() - self.interval)
            if conn is None:
                conn = self._connect()
            start = time.monotonic()
            status = error = detail = version = None
            try:
                conn.request("GET", self.path, headers=self.headers)
                response = conn.getresponse()
                body = response.read()
                status = response.status
                if status == 200:
                    try:
                        version = json.loads(body).get("version")
                    except (ValueError, AttributeError):
                        error, detail = "bad body", body[:200].decode(errors="replace")
                else:
                    error, detail = f"http {status}", body[:200].decode(errors="replace")
                if not self.keep_alive or response.will_close:
                    conn.close()
                    conn = None
            except Exception as exc:  # every failure is a record
                error, detail = error_kind(exc), f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = None
            end = time.monotonic()
            records.append(Record(start - self._t0, end - self._t0, status, error, detail, version, worker))
            if error is not None and self.error_backoff:
                self._stop.wait(self.error_backoff)
        if conn is not None:
            conn.close()


class _HTTPTo(http.client.HTTPConnection):
    """An HTTP connection to `dial`, for a URL that names another host (its Host header)."""

    def __init__(self, host: str, port: int, *, dial: tuple[str, int], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.dial = dial

    def connect(self) -> None:
        self.sock = socket.create_connection(self.dial, self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class HTTPSTo(http.client.HTTPSConnection):
    """An HTTPS connection to `dial` (or the URL's host), checked against `context` for the URL's host."""

    def __init__(self, host: str, port: int, *, dial: tuple[str, int] | None, context: ssl.SSLContext | None, timeout: float) -> None:
        self.tls_context = context or ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls_context)
        self.dial = dial or (host, port)

    def connect(self) -> None:
        sock = socket.create_connection(self.dial, self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self.tls_context.wrap_socket(sock, server_hostname=self.host)
