"""Slow clients are dropped after a bounded time (slowloris): connections that send nothing, or their headers or
body a byte at a time, are closed by the server's deadlines, while normal requests keep being answered.

Raw sockets on 127.0.0.1 against the server `serve` runs (uvicorn with `server.uvicorn_config`), with deadlines
of 1 s for headers and 2 s for a body so the test takes seconds; bounded in connections (24) and time."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from pathlib import Path

import pytest

from clipsearch.server import bind, create_app, uvicorn_config

HEADERS_S, BODY_S = 1.0, 2.0


@pytest.fixture()
def server(tmp_path: Path):
    import uvicorn

    app = create_app(tmp_path / "index", allowed_hosts=["127.0.0.1"])
    sock = bind("127.0.0.1", 0)
    srv = uvicorn.Server(uvicorn_config(app, header_timeout=HEADERS_S, body_timeout=BODY_S))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started
    yield sock.getsockname()[1]
    srv.should_exit = True
    thread.join(10)
    sock.close()


def _closed_after(conns: list[socket.socket], trickle: bytes, limit: float) -> list[float]:
    """Trickle one byte at a time on every connection until the server closes it; seconds each one lasted."""
    start = time.monotonic()
    lasted: dict[int, float] = {}
    for c in conns:
        c.settimeout(0.05)
    i = 0
    while len(lasted) < len(conns) and time.monotonic() - start < limit:
        for n, c in enumerate(conns):
            if n in lasted:
                continue
            try:
                if trickle:
                    c.send(trickle[i % len(trickle):i % len(trickle) + 1])
                if c.recv(4096) == b"":
                    lasted[n] = time.monotonic() - start
            except TimeoutError:
                pass
            except OSError:  # reset or broken pipe: closed by the server
                lasted[n] = time.monotonic() - start
        i += 1
        time.sleep(0.2)
    for c in conns:
        c.close()
    return [lasted.get(n, float("inf")) for n in range(len(conns))]


def _connect(port: int, first: bytes = b"") -> socket.socket:
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    if first:
        c.sendall(first)
    return c


def _healthy(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/api/health")
    assert conn.getresponse().status == 200
    conn.close()


def test_slow_headers_slow_bodies_and_silent_connections_are_dropped(server: int) -> None:
    port = server
    silent = [_connect(port) for _ in range(8)]
    slow_headers = [_connect(port, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n") for _ in range(8)]
    slow_body = [_connect(port, b"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/"
                                b"x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\nq=") for _ in range(8)]
    _healthy(port)  # answered while 24 slow connections are open

    for lasted in (_closed_after(silent, b"", 8), _closed_after(slow_headers, b"X-Slow: a\r\n", 8)):
        assert max(lasted) <= HEADERS_S + 2, lasted
    assert max(_closed_after(slow_body, b"a", 10)) <= BODY_S + 2
    _healthy(port)


def test_a_keep_alive_connection_gets_the_same_deadline_for_its_next_request(server: int) -> None:
    port = server
    c = _connect(port, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    c.settimeout(10)
    assert c.recv(4096).startswith(b"HTTP/1.1 200")
    c.sendall(b"GET /api/health HTTP/1.1\r\n")  # then the next request's headers, slowly
    assert max(_closed_after([c], b"X-Slow: a\r\n", 10)) <= HEADERS_S + 2 + 5  # + uvicorn's keep-alive timer
