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
"""

import asyncio
import os
import socket

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse

TRUTHY = {"1", "true", "yes", "on"}

app = FastAPI(title="cutover example app")


def version() -> str:
    return os.environ.get("APP_VERSION", "dev")


def health_forced_to_fail() -> bool:
    flag_file = os.environ.get("APP_FAIL_HEALTH_FILE", "")
    return os.environ.get("APP_FAIL_HEALTH", "").strip().lower() in TRUTHY or bool(flag_file and os.path.exists(flag_file))


@app.get("/health")
def health() -> JSONResponse:
    if health_forced_to_fail():
        return JSONResponse({"status": "failing", "version": version(), "reason": "APP_FAIL_HEALTH is set"}, status_code=503)
    return JSONResponse({"status": "ok", "version": version()})


@app.get("/")
def index() -> dict:
    return {"service": "cutover-example", "version": version(), "hostname": socket.gethostname()}


@app.get("/slow")
async def slow(seconds: float = Query(1.0, ge=0)) -> dict:
    waited = min(seconds, 30.0)
    await asyncio.sleep(waited)
    return {"version": version(), "slept": waited, "hostname": socket.gethostname()}
