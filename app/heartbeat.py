"""A health probe that needs no HTTP: is /tmp/heartbeat younger than MAX_AGE seconds?

    python -m heartbeat MAX_AGE

A worker or a bot touches the file as it goes (worker.py, bot.py); one that hangs or died
stops touching it. Exit 0 when the file is fresh, 1 otherwise. APP_FAIL_HEALTH="1" makes it
fail, as it makes the web app's /health fail (a release that must be refused).
"""

import os
import sys
import time
from pathlib import Path

TRUTHY = {"1", "true", "yes", "on"}


def main(argv: list[str]) -> int:
    max_age = float(argv[1]) if len(argv) > 1 else 30.0
    if os.environ.get("APP_FAIL_HEALTH", "").strip().lower() in TRUTHY:
        print("heartbeat: APP_FAIL_HEALTH is set", file=sys.stderr)
        return 1
    try:
        age = time.time() - Path("/tmp/heartbeat").stat().st_mtime
    except OSError as exc:
        print(f"heartbeat: no heartbeat yet: {exc}", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"heartbeat: last beat {age:.0f}s ago (more than {max_age:.0f}s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
