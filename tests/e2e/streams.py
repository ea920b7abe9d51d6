"""Long-lived clients through the edge: WebSocket and server-sent events, each reconnecting when its
stream ends, with how every stream ended recorded.

    with Streams("127.0.0.1", 8080, websockets=10, events=10) as streams:
        ...                       # a release
        streams.wait_reconnected(version, timeout=30)
    for s in streams.sessions: ...

A WebSocket stream ended cleanly when the server's close frame arrived (its code is kept: 1012,
"service restart", from uvicorn when the container stops); an event stream ended cleanly when it
sent its "bye" event and then the end of the chunked body. Anything else (a reset, an end without
a close frame, a body cut short, a timeout) is recorded as an error. The WebSocket client is the
`websockets` library (its sync client); the event stream is read with http.client.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
from typing import Any, Self

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

READ_TIMEOUT_S = 10.0  # a tick comes every 0.5 s; a silent stream this long is an error


@dataclasses.dataclass
class Stream:
    """One connection of a client: what answered it and how it ended."""

    opened: float  # monotonic time the greeting arrived
    version: str
    hostname: str
    ended: float | None = None
    clean: bool = False
    how: str = ""  # "close 1012", "bye", or the error


@dataclasses.dataclass
class Session:
    """One client: its connections in order (it reconnects when one ends)."""

    kind: str  # "websocket" or "events"
    streams: list[Stream] = dataclasses.field(default_factory=list)
    reconnect_errors: list[str] = dataclasses.field(default_factory=list)


class Streams:
    def __init__(self, host: str, port: int, *, websockets: int, events: int) -> None:
        self.host, self.port = host, port
        self.sessions = [Session("websocket") for _ in range(websockets)] + [Session("events") for _ in range(events)]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(s,), daemon=True) for s in self.sessions]

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + 30
        while not all(s.streams for s in self.sessions):
            if time.monotonic() > deadline:
                raise TimeoutError("not every stream client connected within 30 s: " + repr(self.errors()))
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=READ_TIMEOUT_S + 5)

    def errors(self) -> list[str]:
        return [e for s in self.sessions for e in s.reconnect_errors]

    def wait_reconnected(self, version: str, timeout: float) -> None:
        """Until every client has a stream answered by `version`."""
        deadline = time.monotonic() + timeout
        while not all(any(st.version == version for st in s.streams) for s in self.sessions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every stream client reached {version} within {timeout}s")
            time.sleep(0.05)

    # ------------------------------------------------------------------ clients

    def _run(self, session: Session) -> None:
        while not self._stop.is_set():
            try:
                if session.kind == "websocket":
                    self._websocket(session)
                else:
                    self._events(session)
            except (OSError, ConnectionClosed, http.client.HTTPException, ValueError) as exc:
                # a connection that could not be opened (or never greeted): try again shortly
                session.reconnect_errors.append(f"{type(exc).__name__}: {exc}")
                self._stop.wait(0.1)

    def _websocket(self, session: Session) -> None:
        with connect(f"ws://{self.host}:{self.port}/ws", open_timeout=5, close_timeout=2) as ws:
            hello = json.loads(ws.recv(timeout=5))
            stream = Stream(time.monotonic(), hello["version"], hello["hostname"])
            session.streams.append(stream)
            n = 0
            while not self._stop.is_set():
                try:
                    ws.send(f"ping {n}")
                    echo = json.loads(ws.recv(timeout=READ_TIMEOUT_S))
                    assert echo["echo"] == f"ping {n}", echo
                    n += 1
                    self._stop.wait(0.5)
                except ConnectionClosed:
                    stream.ended = time.monotonic()
                    received = ws.protocol.close_rcvd
                    stream.clean = received is not None
                    stream.how = f"close {received.code}" if received is not None else "closed without a close frame"
                    return
                except (OSError, TimeoutError) as exc:
                    stream.ended, stream.how = time.monotonic(), f"{type(exc).__name__}: {exc}"
                    return
            ws.close()

    def _events(self, session: Session) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=READ_TIMEOUT_S)
        try:
            conn.request("GET", "/events", headers={"Accept": "text/event-stream"})
            response = conn.getresponse()
            if response.status != 200:
                raise ValueError(f"/events answered {response.status}")
            stream: Stream | None = None
            event: dict[str, Any] = {}
            while not self._stop.is_set():
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException) as exc:  # reset, timeout, chunked body cut short
                    if stream is None:
                        raise
                    stream.ended, stream.how = time.monotonic(), f"{type(exc).__name__}: {exc}"
                    return
                if not line:  # the end of the body: clean only after "bye"
                    if stream is None:
                        raise ValueError("/events ended before its hello")
                    stream.ended = time.monotonic()
                    stream.clean = stream.how == "bye"
                    stream.how = stream.how or "ended without bye"
                    return
                text = line.decode().rstrip("\r\n")
                if text.startswith("event: "):
                    event = {"name": text[7:]}
                elif text.startswith("data: "):
                    event["data"] = json.loads(text[6:])
                elif not text and event:
                    if event["name"] == "hello":
                        stream = Stream(time.monotonic(), event["data"]["version"], event["data"]["hostname"])
                        session.streams.append(stream)
                    elif event["name"] == "bye" and stream is not None:
                        stream.how = "bye"
                    event = {}
        finally:
            conn.close()
