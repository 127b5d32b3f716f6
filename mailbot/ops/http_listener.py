"""The health and metrics listener of `mailbot run` (`/healthz`, `/metrics`), on asyncio in a
thread of its own, so that no client of it can slow the mail down.

What a client can make it spend is bounded:
- a connection costs no thread: an event loop holds them all; at most `[http]
  max_connections` at once. One more closes the oldest connection that has not yet sent
  its whole request (a half-sent request, a client that connected and said nothing), so a
  flood of those never locks `/healthz` out; when every connection is being answered, the
  new one hears 503 and is closed;
- a client has `[http] timeout` seconds to send its whole request (not per byte: a byte
  every few seconds does not keep it open), and as long to read the answer; one request
  per connection (`Connection: close`), a request head of at most 8 KB;
- `/metrics` is rendered at most once every `[http] metrics_cache` seconds, by one thread,
  in a read transaction (mailbot.ops.metrics): scrapes arriving meanwhile get the same
  page; `/healthz` reads the database each time (a `SELECT 1`), but concurrent checks share
  one. The database work runs on two threads of the listener's own.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

from sqlalchemy import text

from mailbot.app import App
from mailbot.ops.metrics import TEXT_FORMAT, render

log = logging.getLogger("mailbot.http")
MAX_HEAD = 8192  # bytes of a request line and headers


class _Shared:
    """One call at a time of an async function; callers arriving meanwhile get its result."""

    def __init__(self, fn: Callable[[], Awaitable[bytes]]) -> None:
        self.fn = fn
        self.running: asyncio.Future[bytes] | None = None

    async def __call__(self) -> bytes:
        if self.running is None:
            self.running = asyncio.ensure_future(self.fn())
            self.running.add_done_callback(lambda _: setattr(self, "running", None))
        return await asyncio.shield(self.running)


class HttpListener:
    def __init__(self, app: App) -> None:
        cfg = app.config.http
        self.app = app
        self.max_connections = cfg.max_connections
        self.timeout = cfg.timeout
        self.metrics_ttl = cfg.metrics_cache
        self.sock = socket.create_server((cfg.host, cfg.port), backlog=min(1024, 4 * cfg.max_connections))
        self.server_address = self.sock.getsockname()
        self.loop = asyncio.new_event_loop()
        self.db_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="http-db")
        self.open = 0
        self.unsent: dict[asyncio.StreamWriter, None] = {}  # connections yet to send a whole request, oldest first
        self.writers: set[asyncio.StreamWriter] = set()  # every connection open
        self.tasks: set[asyncio.Task[None]] = set()
        self._page: tuple[float, bytes] | None = None  # (monotonic time rendered, /metrics body)
        self._render = _Shared(self._render_metrics)
        self._check = _Shared(self._check_database)
        self._stopped = asyncio.Event()
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- serving
    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        server = await asyncio.start_server(self._connection, sock=self.sock, limit=MAX_HEAD)
        async with server:
            await self._stopped.wait()
            for writer in list(self.writers):  # the connections still open end now
                writer.transport.abort()
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=5)

    def shutdown(self) -> None:
        """Stop serving (from any thread) and close the socket."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(lambda: self._stopped.set())
            self._thread.join(10)
        self.db_threads.shutdown(wait=False, cancel_futures=True)

    def server_close(self) -> None:  # (the name socketserver's servers had)
        self.shutdown()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= self.max_connections and not self._evict_one():
            writer.write(_response(503, b"too many connections\n"))
            writer.close()
            return
        self.open += 1
        self.unsent[writer] = None
        self.writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
            finally:
                self.unsent.pop(writer, None)
            code, body, ctype = await self._answer(head)
            writer.write(_response(code, body, ctype))
            await asyncio.wait_for(writer.drain(), self.timeout)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            writer.transport.abort()
        finally:
            self.open -= 1
            self.writers.discard(writer)
            self.tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    def _evict_one(self) -> bool:
        """Close the oldest connection that has not sent its whole request; False if none."""
        for writer in self.unsent:
            del self.unsent[writer]
            writer.transport.abort()
            return True
        return False

    async def _answer(self, head: bytes) -> tuple[int, bytes, str]:
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        if method != "GET":
            return 405, b"method not allowed\n", "text/plain"
        if path == "/healthz":
            try:
                return 200, await self._check(), "text/plain"
            except Exception as exc:
                return 503, f"database unavailable: {type(exc).__name__}\n".encode(), "text/plain"
        if path == "/metrics":
            page = self._page
            if page is not None and time.monotonic() - page[0] < self.metrics_ttl:
                return 200, page[1], TEXT_FORMAT
            try:  # the scrape fails visibly when the database cannot be read: Prometheus sets up=0
                return 200, await self._render(), TEXT_FORMAT
            except Exception as exc:
                return 503, f"database unavailable: {type(exc).__name__}\n".encode(), "text/plain"
        return 404, b"not found\n", "text/plain"

    # ------------------------------------------------------------ database work
    async def _render_metrics(self) -> bytes:
        body = await asyncio.wait_for(self.loop.run_in_executor(self.db_threads, render, self.app), 30)
        self._page = (time.monotonic(), body)
        return body

    async def _check_database(self) -> bytes:
        def check() -> bytes:
            with self.app.engine.connect() as c:
                c.execute(text("SELECT 1"))
            return b"ok\n"

        return await asyncio.wait_for(self.loop.run_in_executor(self.db_threads, check), 30)


def _response(code: int, body: bytes, ctype: str = "text/plain") -> bytes:
    head = (f"HTTP/1.1 {code} {HTTPStatus(code).phrase}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n")
    return head.encode("latin-1") + body


def start_http(app: App) -> HttpListener:
    """Bind `[http] host:port` and serve in a thread of its own (stop with `.shutdown()`)."""
    return HttpListener(app)
