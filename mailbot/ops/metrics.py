"""`/healthz` and Prometheus `/metrics` on a configured loopback port (stdlib http.server)."""

from __future__ import annotations

import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import func, or_, text
from sqlmodel import col, select

from mailbot import db
from mailbot.app import App
from mailbot.models import Case, Event, Inbound, Outbox, Quarantine


def collect(app: App) -> dict[str, float]:
    """Gauges and counters read from the database (the source of truth, shared by instances)."""
    now = app.now()
    with db.read_scope(app.engine) as s:
        def count(model: type, *where: object) -> int:
            return int(s.exec(select(func.count()).select_from(model).where(*where)).one())

        # Age of the oldest pending mail that is due or being retried, counted from when it
        # was written (a retry moves not_before forward; a "send at" row not yet due is no backlog).
        oldest: datetime | None = s.exec(select(func.min(Outbox.created_at)).where(
            Outbox.status == "pending", or_(Outbox.attempts > 0, col(Outbox.not_before) <= now))).one()
        return {
            "mailbot_mails_in_total": count(Inbound),
            "mailbot_cases_opened_total": count(Case),
            "mailbot_cases_open": count(Case, col(Case.status).in_(
                ("new", "acknowledged", "in_progress", "waiting_customer", "reexamination"))),
            "mailbot_acks_sent_total": count(Outbox, Outbox.kind == "acknowledgement", Outbox.status == "sent"),
            "mailbot_outbox_depth": count(Outbox, Outbox.status == "pending"),
            "mailbot_outbox_failed": count(Outbox, Outbox.status == "failed"),
            "mailbot_outbox_oldest_age_seconds": max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
            "mailbot_quarantine_size": count(Quarantine, Quarantine.status == "held"),
            "mailbot_sla_breaches_total": count(Event, Event.type == "escalation"),
            "mailbot_ack_breaches_total": count(Event, Event.type == "ack_breach"),
        }


HELP = {
    "mailbot_mails_in_total": "Inbound mails recorded (all channels, all outcomes)",
    "mailbot_cases_opened_total": "Cases opened since the database was created",
    "mailbot_cases_open": "Cases not yet answered or closed",
    "mailbot_acks_sent_total": "Acknowledgements delivered to the relay",
    "mailbot_outbox_depth": "Outgoing mails waiting to be sent",
    "mailbot_outbox_failed": "Outgoing mails that failed for good",
    "mailbot_outbox_oldest_age_seconds": "Age of the oldest due or retried outgoing mail",
    "mailbot_quarantine_size": "Mails held in quarantine",
    "mailbot_sla_breaches_total": "Escalations at deadline breach",
    "mailbot_ack_breaches_total": "Acknowledgement deadlines missed",
}


def render_prometheus(values: dict[str, float]) -> str:
    lines = []
    for name, value in values.items():
        kind = "counter" if name.endswith("_total") else "gauge"
        lines += [f"# HELP {name} {HELP.get(name, name)}", f"# TYPE {name} {kind}", f"{name} {value:g}"]
    return "\n".join(lines) + "\n"


def start_http(app: App) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/healthz":
                try:
                    with app.engine.connect() as c:
                        c.execute(text("SELECT 1"))
                    self._send(200, "ok\n")
                except Exception as exc:
                    self._send(503, f"database unavailable: {type(exc).__name__}\n")
            elif self.path == "/metrics":
                try:
                    body = render_prometheus(collect(app))
                except Exception as exc:  # the scrape fails visibly: Prometheus sets up=0
                    self._send(503, f"database unavailable: {type(exc).__name__}\n")
                    return
                self._send(200, body, "text/plain; version=0.0.4")
            else:
                self._send(404, "not found\n")

        def _send(self, code: int, body: str, ctype: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    cfg = app.config.http
    server = ThreadingHTTPServer((cfg.host, cfg.port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
