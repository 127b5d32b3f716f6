"""`mailbot web` as it is run: a real uvicorn process on loopback (several of them on one
PostgreSQL database), talked to over real sockets."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest

from tests.pg import throwaway_schema
from tests.procs import free_port
from tests.webtools import start_web, stop

pytestmark = pytest.mark.slow  # processes, servers or corpora: left out by `make test-fast`


def test_mailbot_web_refuses_to_start_without_its_secret(tmp_path: Path) -> None:
    proc = start_web(tmp_path, free_port(), f"sqlite:///{tmp_path}/m.db", secret=None)
    assert proc.wait(timeout=30) == 2
    err = proc.stderr.read().decode()
    assert "MAILBOT_WEB_SECRET" in err and "web.secret_file" in err


def _raw_http(port: int, head: bytes, body_chunks: list[bytes] = ()) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except OSError:
                break
        out = b""
        while b"\r\n\r\n" not in out:
            data = s.recv(4096)
            if not data:
                break
            out += data
        return out


def test_an_oversized_upload_is_refused_before_it_is_read(tmp_path: Path) -> None:
    port = free_port()
    proc = start_web(tmp_path, port, f"sqlite:///{tmp_path}/m.db", web={"max_request_size": 100_000})
    try:
        # Declared too big: 413 at once, while the client has sent no byte of its 1 GB body.
        head = (b"POST /complaint/kalra-plus HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                b"boundary=b\r\nContent-Length: 1000000000\r\n\r\n")
        assert _raw_http(port, head).startswith(b"HTTP/1.1 413")
        # Chunked, no length: cut off once past the limit, though the client goes on sending.
        head = (b"POST /complaint/kalra-plus HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                b"boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n")
        part = (b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.pdf"\r\n'
                b"Content-Type: application/pdf\r\n\r\n")
        chunks = [b"%x\r\n%s\r\n" % (len(part), part)] + [b"%x\r\n%s\r\n" % (65536, b"a" * 65536)] * 200
        assert _raw_http(port, head, chunks).startswith(b"HTTP/1.1 413")
        assert httpx.get(f"http://127.0.0.1:{port}/complaint/kalra-plus").status_code == 200  # still serving
    finally:
        stop(proc)


def _csrf(c: httpx.Client, path: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', c.get(path).text).group(1)


def test_several_web_processes_serve_one_postgresql_database(tmp_path: Path) -> None:
    """Sign in through one process, use the session on another, sign out on the first:
    nothing lives in a process."""
    from mailbot.app import App
    from mailbot.config import load_config
    from tests.webtools import link_in, sent_mails

    with throwaway_schema("w") as url:
        a_port, b_port = free_port(), free_port()
        a = start_web(tmp_path, a_port, url, name="a.toml")
        b = start_web(tmp_path, b_port, url, name="b.toml")
        try:
            A, B = f"http://127.0.0.1:{a_port}", f"http://127.0.0.1:{b_port}"
            with httpx.Client(base_url=A) as ca:
                ca.post("/staff/signin", data={"csrf": _csrf(ca, "/staff/signin"),
                                               "email": "supervisor@kalra-plus.com"})
            app = App.open(load_config(tmp_path / "a.toml"))
            try:
                link = link_in(sent_mails(app, tmp_path / "sent"), re.escape(A) + r"/staff/signin/\S+")
            finally:
                app.close()
            with httpx.Client(base_url=B) as cb:  # the link of process A's mail, used on process B
                path = link.removeprefix(A)
                r = cb.post(path, data={"csrf": _csrf(cb, path)})
                assert r.status_code == 303
                session = cb.cookies.get("mb_staff")
            with httpx.Client(base_url=A, cookies={"mb_staff": session}) as ca:
                assert ca.get("/staff/dashboard").status_code == 200
                assert ca.post(path, data={"csrf": _csrf(ca, "/staff/signin")}).status_code == 403  # used on B
                assert ca.post("/staff/signout", data={"csrf": _csrf(ca, "/staff/dashboard")}).status_code == 303
            with httpx.Client(base_url=B, cookies={"mb_staff": session}) as cb:
                assert cb.get("/staff/dashboard").status_code == 303
        finally:
            stop(a)
            stop(b)
