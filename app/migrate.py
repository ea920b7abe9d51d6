"""One-shot "migration" run before new web containers start.

    python -m migrate      (or: python migrate.py)

It only reports what a real migration step would do and exits 0.
Demo knob: APP_FAIL_MIGRATION="1"/"true" makes it fail with exit code 1,
which must stop a deploy before any new web container starts.
"""

import os
import sys

TRUTHY = {"1", "true", "yes", "on"}


def main() -> int:
    version = os.environ.get("APP_VERSION", "dev")
    print(f"migrate: release {version}: checking schema", flush=True)
    if os.environ.get("APP_FAIL_MIGRATION", "").strip().lower() in TRUTHY:
        print(f"migrate: release {version}: FAILED (APP_FAIL_MIGRATION is set)", file=sys.stderr, flush=True)
        return 1
    print(f"migrate: release {version}: schema up to date, nothing to apply", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
