"""The periodic jobs: what the daemon's scheduler runs and what `mailbot tick` runs once.

Each job is a top-level function of the App, idempotent, and safe to run from
several instances at once (claims use FOR UPDATE SKIP LOCKED on PostgreSQL,
unique marks in the database make "once per case and point" hold).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mailbot.app import App

log = logging.getLogger("mailbot.jobs")


def job_sla_sweep(app: App) -> str:
    from mailbot.cases.lifecycle import sla_sweep

    return f"sla sweep: {sla_sweep(app)}"


def job_digest(app: App) -> str:
    from mailbot.cases.digest import send_digests

    return f"digest: {send_digests(app)} queued"


def job_autoclose(app: App) -> str:
    from mailbot.cases.lifecycle import autoclose

    return f"auto-close: {autoclose(app)} closed"


def job_retention(app: App) -> str:
    from mailbot.cases.lifecycle import purge_retention

    return f"retention: {purge_retention(app)} purged"


def job_letters(app: App) -> str:
    from mailbot.cases.postal import render_pending

    return f"letters: {render_pending(app)} rendered"


def job_alert_digests(app: App) -> str:
    from mailbot.cases.alerts import send_digests

    return f"alert digests: {send_digests(app)} sent"


def job_outbox(app: App) -> str:
    from mailbot.cases.deliveries import dispatch

    return f"outbox: {dispatch(app)}"


# Order matters for `tick`: the sweep may queue mail that the dispatch then sends.
JOBS: tuple[tuple[str, Callable[[App], str]], ...] = (
    ("sla_sweep", job_sla_sweep),
    ("digest", job_digest),
    ("autoclose", job_autoclose),
    ("retention", job_retention),
    ("letters", job_letters),
    ("alert_digests", job_alert_digests),
    ("outbox", job_outbox),
)


def run_all_jobs(app: App) -> list[str]:
    return [fn(app) for _name, fn in JOBS]
