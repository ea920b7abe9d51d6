"""Example web service deployed by cutover.

Endpoints:
  GET /health          200 {"status": "ok", "version": ...}
  GET /                version and hostname (the container id under Docker)
  GET /slow?seconds=N  waits N seconds (at most 30), then answers; shows that
                       requests in flight survive a traffic switch
  GET /events          server-sent events: a "hello" event, then a "tick" every 0.5 s, each
                       with the version; on SIGTERM a "bye" event and a clean end of stream
  WS  /ws              WebSocket: a {"version"} greeting, then each text message echoed back
                       with the version; on SIGTERM uvicorn closes it with code 1012
                       (service restart), which clients treat as "reconnect"

Long-lived connections end when the container is told to stop (SIGTERM), which cutover
does once the release that replaces it has served for the drain period (proxy.drain), so
they are closed cleanly, never cut, and a client that reconnects reaches the new release.

Environment:
  APP_VERSION       reported version; baked into the image at build time
  APP_FAIL_HEALTH   demo knob: "1"/"true" makes /health answer 503, so a
                    release that sets it is refused by the deploy
  APP_FAIL_HEALTH_FILE  demo knob: /health answers 503 while this file exists
                    (a passing fault, for the tests of a retried release)
  APP_CRASH_AFTER   demo knob: N seconds after it starts, the process dies (exit 70),
                    every time it is restarted: a release that goes bad once live
  APP_UNHEALTHY_AFTER  demo knob: /health answers 503 from N seconds after start on,
                    while every other page still answers
  APP_FAIL_PAGES    demo knob: "1"/"true" makes every page but /health answer 500
"""

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse

TRUTHY = {"1", "true", "yes", "on"}

STARTED = time.monotonic()
# Set on SIGTERM: the streams end cleanly rather than wait for uvicorn's graceful timeout to cut them.
STOPPING = asyncio.Event()
TICK_S = 0.5


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Chain a SIGTERM handler in front of uvicorn's own (installed with signal.signal before the
    lifespan starts: uvicorn server.py capture_signals), so both run: uvicorn stops accepting and
    closes WebSockets with 1012, and the event streams send "bye" and end."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(STOPPING.set)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    yield


app = FastAPI(title="cutover example app", lifespan=lifespan)


def _seconds(name: str) -> float | None:
    try:
        return float(os.environ[name])
    except (KeyError, ValueError):
        return None


def _crash() -> None:
    print(f"crashing: APP_CRASH_AFTER={os.environ['APP_CRASH_AFTER']} seconds have passed", file=sys.stderr, flush=True)
    os._exit(70)


if (_crash_after := _seconds("APP_CRASH_AFTER")) is not None:
    threading.Timer(_crash_after, _crash).start()


def version() -> str:
    return os.environ.get("APP_VERSION", "dev")


def health_forced_to_fail() -> bool:
    flag_file = os.environ.get("APP_FAIL_HEALTH_FILE", "")
    unhealthy_after = _seconds("APP_UNHEALTHY_AFTER")
    return (
        os.environ.get("APP_FAIL_HEALTH", "").strip().lower() in TRUTHY
        or bool(flag_file and os.path.exists(flag_file))
        or (unhealthy_after is not None and time.monotonic() - STARTED >= unhealthy_after)
    )


def pages_forced_to_fail() -> bool:
    return os.environ.get("APP_FAIL_PAGES", "").strip().lower() in TRUTHY


@app.get("/health")
def health() -> JSONResponse:
    if health_forced_to_fail():
        return JSONResponse({"status": "failing", "version": version(), "reason": "APP_FAIL_HEALTH is set"}, status_code=503)
    return JSONResponse({"status": "ok", "version": version()})


@app.get("/", response_model=None)
def index() -> dict | JSONResponse:
    body = {"service": "cutover-example", "version": version(), "hostname": socket.gethostname()}
    if pages_forced_to_fail():
        return JSONResponse({**body, "error": "APP_FAIL_PAGES is set"}, status_code=500)
    return body


@app.get("/slow")
async def slow(seconds: float = Query(1.0, ge=0)) -> dict:
    waited = min(seconds, 30.0)
    await asyncio.sleep(waited)
    return {"version": version(), "slept": waited, "hostname": socket.gethostname()}


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


@app.get("/events")
async def events() -> StreamingResponse:
    async def stream() -> AsyncIterator[str]:
        host = socket.gethostname()
        yield _event("hello", {"version": version(), "hostname": host})
        n = 0
        while not STOPPING.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(STOPPING.wait(), timeout=TICK_S)
            if not STOPPING.is_set():
                n += 1
                yield _event("tick", {"version": version(), "n": n})
        yield _event("bye", {"version": version(), "reason": "this container is stopping: reconnect"})

    # no-cache and no buffering on the way: each event reaches the client as it is written
    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@app.websocket("/ws")
async def ws(socket_: WebSocket) -> None:
    await socket_.accept()
    await socket_.send_json({"version": version(), "hostname": socket.gethostname()})
    try:
        while True:
            text = await socket_.receive_text()
            await socket_.send_json({"version": version(), "echo": text})
    except WebSocketDisconnect:
        pass
