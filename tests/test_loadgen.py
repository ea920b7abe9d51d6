"""The load generator's client model: a GET closed before any response is sent again once."""

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


def run(url: str, retry_closed: bool) -> tuple[int, int, int]:
    gen = LoadGen(url, threads=1, timeout=2, keep_alive=False, max_duration=10, retry_closed=retry_closed)
    gen.start()
    time.sleep(0.5)
    result = gen.stop()
    return result.total, result.failed, result.retried


def test_without_retry_each_close_is_a_failure(flaky_server: str) -> None:
    total, failed, retried = run(flaky_server, retry_closed=False)
    assert total > 30 and retried == 0
    assert failed >= total // 3 - 1


def test_with_retry_a_close_is_resent_once_and_counted(flaky_server: str) -> None:
    total, failed, retried = run(flaky_server, retry_closed=True)
    assert retried >= total // 3 - 1 and retried > 10
    assert failed == 0, "the resent request got its 200"
