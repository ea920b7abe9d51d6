"""Container health probe (the slim image has no curl).

GET http://127.0.0.1:$PORT$HEALTH_PATH (defaults 8000 and /health) with a 2 s
timeout; exit 0 on HTTP 200, 1 otherwise.
"""

import http.client
import os
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("PORT", "8000")
    path = os.environ.get("HEALTH_PATH", "/health")
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except (OSError, http.client.HTTPException) as exc:  # refused, timeout, 503...
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
