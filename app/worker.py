"""A queue worker: takes jobs from Redis with a reliable-queue pattern and finishes its job on SIGTERM.

    python -m worker

A job is a string, "ID" or "ID:SECONDS", pushed on the list `jobs` (LPUSH). The worker moves
one job at a time onto a list of its own, `processing:<hostname>` (BLMOVE: at every instant
the job is in one list or the other, never in neither), does it (SECONDS of work), records it
(`HINCRBY done ID 1`) and only then removes it from its list. `started` counts the starts
the same way, so a job cut off half-way shows as started more often than done.

SIGTERM: it finishes the job in hand, takes no other and exits 0; a release gives the old
workers their stop timeout for that. On start it puts back onto `jobs` what a worker of its
own hostname left in its list (a container restarted after a crash keeps its hostname).
Health: it touches /tmp/heartbeat at least every 2 s (`python -m heartbeat 30` checks it).

Environment: REDIS_URL; WORKER_QUEUE (default "jobs"); APP_VERSION.
"""

import os
import signal
import socket
import sys
import time
from pathlib import Path

import redis

HEARTBEAT = Path("/tmp/heartbeat")
stopping = False


def stop(signum: int, frame: object) -> None:
    global stopping
    stopping = True
    print(f"worker: signal {signum}: finishing the job in hand, then exiting", flush=True)


def beat() -> None:
    HEARTBEAT.touch()


def main() -> int:
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    queue = os.environ.get("WORKER_QUEUE", "jobs")
    version = os.environ.get("APP_VERSION", "dev")
    mine = f"processing:{socket.gethostname()}"
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=10, decode_responses=True)
    while client.lmove(mine, queue, "RIGHT", "RIGHT") is not None:
        print("worker: put back a job a previous run of this container left", flush=True)
    print(f"worker: release {version} takes jobs from {queue}", flush=True)
    beat()
    while not stopping:
        job = client.blmove(queue, mine, 1, "RIGHT", "LEFT")
        beat()
        if job is None:
            continue
        job_id, _, seconds = job.partition(":")
        client.hincrby("started", job_id, 1)
        deadline = time.monotonic() + float(seconds or 0)
        while time.monotonic() < deadline:  # the work; the heartbeat goes on
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            beat()
        client.hincrby("done", job_id, 1)
        client.hset("done_by", job_id, version)
        client.lrem(mine, 1, job)
    print("worker: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
