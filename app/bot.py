"""A bot that talks only outward, so it must never run twice: two would answer every message twice.

    python -m bot

It ticks once a second (what a real bot does with its chat service) and touches
/tmp/heartbeat at every tick (`python -m heartbeat 10` checks it). It says on stdout when it
starts and stops; SIGTERM stops it after the tick in hand.
"""

import signal
import socket
import sys
import time
from pathlib import Path

HEARTBEAT = Path("/tmp/heartbeat")
stopping = False


def stop(signum: int, frame: object) -> None:
    global stopping
    stopping = True


def main() -> int:
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"bot: {socket.gethostname()} is the one bot now", flush=True)
    while not stopping:
        HEARTBEAT.touch()
        time.sleep(1)
    print(f"bot: {socket.gethostname()} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
