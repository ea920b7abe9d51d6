"""The load generator counts every request that did not get a 200, including a connection
closed without any response: the e2e scenarios' "0 failed" could not hide one."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.e2e.loadgen import LoadGen


@pytest.fixture
def flaky_server() -> Iterator[str]:
    """Answers 200 on every connection but each third, which it closes after reading the request."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        n = 0
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            n += 1
            with conn:
                conn.recv(4096)
                if n % 3 == 0:
                    continue  # closed without a response
                body = b'{"version": "v1"}'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_a_close_without_response_is_a_failure_and_is_never_resent(flaky_server: str) -> None:
    gen = LoadGen(flaky_server, threads=1, timeout=2, keep_alive=False, max_duration=10)
    gen.start()
    time.sleep(0.5)
    result = gen.stop()
    assert result.total > 30
    assert result.failed >= result.total // 3 - 1
    assert result.ok == result.total - result.failed and {r.version for r in result.records if r.ok} == {"v1"}
    assert set(result.errors) <= {"remote disconnected", "connection reset", "broken pipe"}, result.errors
