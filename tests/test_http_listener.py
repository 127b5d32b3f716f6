"""The health and metrics listener under abuse (#27 item 11), in process: the connection cap,
the request deadline, scrapes served from one render. Against a running daemon:
tests/test_security_daemon.py. mailbot/ops/http_listener.py; docs/security.md.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from mailbot.app import App
from mailbot.ops.http_listener import HttpListener, start_http
from tests.conftest import make_config
from tests.procs import free_port, wait_until
from tests.test_ops import http_get

HALF = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # no blank line: the request never ends


@pytest.fixture
def listener(tmp_path: Path, sqlite_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[App, HttpListener]]:
    http = {"enabled": True, "port": free_port(), **getattr(request, "param", {})}
    app = App.open(make_config(tmp_path, sqlite_url, http=http), upgrade=True)
    server = start_http(app)
    try:
        yield app, server
    finally:
        server.shutdown()
        app.close()


def _half_sent(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(HALF)
    return s


def _closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        while chunk := s.recv(4096):
            if b"HTTP/1.1" in chunk and b"503" not in chunk:
                return False  # answered as if the request were whole
        return True
    except TimeoutError:
        return False
    except OSError:  # reset: closed too
        return True


@pytest.mark.parametrize("listener", [{"max_connections": 4, "timeout": 30}], indirect=True)
def test_over_the_cap_the_oldest_half_sent_connection_makes_room(listener: tuple[App, HttpListener]) -> None:
    """Four half-sent requests fill the cap (their deadline is far): /healthz still answers,
    by closing the oldest of them, and again, by closing the next."""
    _app, server = listener
    port = server.server_address[1]
    socks = [_half_sent(port) for _ in range(4)]
    try:
        wait_until(lambda: server.open == 4, what="four connections held")
        assert http_get(port, "/healthz")[:1] == (200,)
        assert _closed_by_server(socks[0], 10)
        socks.append(_half_sent(port))  # the cap full again
        wait_until(lambda: server.open == 4, what="four connections held")
        assert http_get(port, "/healthz")[:1] == (200,)
        assert _closed_by_server(socks[1], 10)
        assert server.open <= 4
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("listener", [{"timeout": 1.5}], indirect=True)
def test_a_request_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline(listener: tuple[App, HttpListener]) -> None:
    """The deadline is for the whole request, not for each byte: a client sending a byte
    every 0.2 s never completes it and is closed, well before it would have finished."""
    _app, server = listener
    request = b"GET /healthz HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as s:
        sent, closed = 0, False
        for byte in request:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            sent += 1
            time.sleep(0.2)
            if sent > 60:  # 12 s of trickling: 8 times the deadline
                break
        closed = closed or _closed_by_server(s, 5)
    assert closed and sent < len(request), sent


def test_concurrent_scrapes_read_the_database_once(listener: tuple[App, HttpListener]) -> None:
    """40 scrapes at once are served from one render (one read of the cases table), and a
    scrape within `metrics_cache` seconds of it reads nothing."""
    app, server = listener
    port = server.server_address[1]
    reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM cases" in statement:
            reads.append(statement)

    event.listen(app.engine, "before_cursor_execute", count)
    try:
        answers: list[tuple[int, str, str]] = []
        threads = [threading.Thread(target=lambda: answers.append(http_get(port, "/metrics"))) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(answers) == 40 and {a[0] for a in answers} == {200}
        assert len({a[2] for a in answers}) == 1 and "mailbot_cases_open" in answers[0][2]
        first = len(reads)
        assert 1 <= first <= 2 * 2, reads  # one render (two queries of cases), a second at most if one ended
        assert http_get(port, "/metrics")[0] == 200 and len(reads) == first
    finally:
        event.remove(app.engine, "before_cursor_execute", count)


def test_only_get_of_the_two_paths_is_answered(listener: tuple[App, HttpListener]) -> None:
    _app, server = listener
    port = server.server_address[1]
    assert http_get(port, "/nothing")[0] == 404
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 405")
