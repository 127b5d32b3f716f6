"""Helpers for the web side's tests: an in-process client, CSRF tokens, mailed links."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from mailbot.app import App
from mailbot.cases.deliveries import dispatch
from mailbot.web.app import create_app

WEB_SECRET = "web-test-secret-0123456789"
BASE = "http://testserver"
WEB = {"secret": WEB_SECRET, "public_url": BASE}


def client(app: App) -> TestClient:
    """An in-process browser; over https when the configured public URL is."""
    public = app.config.web.public_url or BASE
    return TestClient(create_app(app, secret=WEB_SECRET, base_url=public), follow_redirects=False,
                      base_url="https://testserver" if public.startswith("https") else "http://testserver")


def csrf(c: TestClient, path: str = "/complaint/kalra-plus") -> str:
    """The CSRF field of a page's form (the page also sets the cookie it pairs with)."""
    r = c.get(path)
    m = re.search(r'name="csrf" value="([^"]+)"', r.text)
    assert m, f"no CSRF field on {path} ({r.status_code})"
    return m.group(1)


COMPLAINT: dict[str, str] = {
    "name": "Marie Curie", "email": "marie@example.org", "phone": "06 12 34 56 78",
    "subject": "Virement non reçu", "fact_date": "2026-11-03", "operation_type": "virement",
    "amount": "1250,00", "currency": "EUR", "references": "VIR-88213",
    "description": "Mon virement de 1 250,00 EUR n'est jamais arrivé chez le bénéficiaire.",
    "steps_taken": "J'ai appelé le service client le 5 novembre.",
}


def post_complaint(c: TestClient, brand: str = "kalra-plus", files: list[tuple[str, bytes, str]] = (),
                   **fields: str) -> Any:
    token = csrf(c, f"/complaint/{brand}")
    data = {**COMPLAINT, "csrf": token, **fields}
    return c.post(f"/complaint/{brand}", data=data,
                  files=[("files", f) for f in files] or None)


def sent_mails(app: App, sent_dir: Path) -> list[email.message.EmailMessage]:
    """Dispatch the outbox (Maildir transport) and read every mail sent so far."""
    dispatch(app)
    out = []
    for p in sorted((sent_dir / "new").glob("*"), key=lambda p: p.stat().st_mtime_ns):
        out.append(email.message_from_bytes(p.read_bytes(), policy=email.policy.default))
    return out  # type: ignore[return-value]


def text_of(msg: email.message.EmailMessage) -> str:
    body = msg.get_body(("plain",))
    return body.get_content() if body is not None else ""


def link_in(msgs: list[email.message.EmailMessage], pattern: str, where: Callable[[Any], bool] = lambda m: True) -> str:
    """The last link matching `pattern` in the plain text of the mails `where` accepts."""
    found = [m.group(0) for msg in msgs if where(msg) for m in re.finditer(pattern, text_of(msg))]
    assert found, f"no link {pattern} in {len(msgs)} mails"
    return found[-1]


def start_web(tmp_path: Path, port: int, db_url: str, *, secret: str | None = WEB_SECRET,
              name: str = "config.toml", **over: Any) -> Any:
    """`mailbot web` as a real process on 127.0.0.1:port; returns the Popen once it answers
    (or once it exited, for the tests of a refusal)."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from tests.conftest import ROOT, config_data, deep_merge
    from tests.procs import to_toml

    data = config_data(tmp_path, db_url, **over)
    data["web"] = deep_merge(data.get("web", {}), {"host": "127.0.0.1", "port": port,
                                                  "public_url": f"http://127.0.0.1:{port}"})
    cfg = tmp_path / name
    cfg.write_text(to_toml(data))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MAILBOT_WEB_SECRET", None)
    if secret:
        env["MAILBOT_WEB_SECRET"] = secret
    proc = subprocess.Popen([sys.executable, "-m", "mailbot.cli", "--config", str(cfg), "web"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=0.5)
            return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("mailbot web did not answer in 30 s")


def stop(proc: Any) -> None:
    """End a process we started (by its PID), and wait for it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except Exception:  # noqa: BLE001 - then it is killed
            proc.kill()
            proc.wait()
