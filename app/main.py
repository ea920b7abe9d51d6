"""Example web service deployed by cutover.

Endpoints:
  GET /health          200 {"status": "ok", "version": ...}
  GET /                version and hostname (the container id under Docker)
  GET /slow?seconds=N  waits N seconds (at most 30), then answers; shows that
                       requests in flight survive a traffic switch

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
import os
import socket
import sys
import threading
import time

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse

TRUTHY = {"1", "true", "yes", "on"}

app = FastAPI(title="cutover example app")
STARTED = time.monotonic()


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
