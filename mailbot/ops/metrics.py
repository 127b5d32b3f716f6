"""What Prometheus `/metrics` shows (served by mailbot.ops.http_listener, with `/healthz`).

`/metrics` is the text format of prometheus_client: the counters of this process
(mailbot.counters: mails in by outcome, cases opened, mails sent and failed, SLA and
acknowledgement breaches, by brand) and gauges read from the database, shared by
every instance (cases open and overdue by brand, the outbox's depth, failures and
oldest due mail, the quarantine).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import (  # noqa: F401 (TEXT_FORMAT: for the listener)
    CONTENT_TYPE_PLAIN_0_0_4 as TEXT_FORMAT,  # what every Prometheus reads
)
from prometheus_client.registry import Collector
from sqlalchemy import func, or_
from sqlmodel import col, select

from mailbot import counters, db
from mailbot.app import App
from mailbot.ingest.pipeline import Outcome
from mailbot.models import Case, Outbox, Quarantine

OPEN_STATUSES = ("new", "acknowledged", "in_progress", "waiting_customer", "reexamination")


class _DatabaseGauges(Collector):
    """Read at each scrape, in a read transaction (it never waits for the writers)."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        now = self.app.now()
        brands = [b.key for b in self.app.config.brands]
        with db.read_scope(self.app.engine) as s:
            open_by = dict(s.exec(select(Case.brand, func.count()).where(col(Case.status).in_(OPEN_STATUSES))
                                  .group_by(Case.brand)).all())
            overdue_by = dict(s.exec(select(Case.brand, func.count()).where(
                col(Case.status).in_(OPEN_STATUSES), col(Case.due_at) < now).group_by(Case.brand)).all())
            by_status = dict(s.exec(select(Outbox.status, func.count()).group_by(Outbox.status)).all())
            # The oldest pending mail that is due or being retried, aged from when it was written
            # (a retry moves not_before on; a "send at" row not due yet is no backlog).
            oldest: datetime | None = s.exec(select(func.min(Outbox.created_at)).where(
                Outbox.status == "pending", or_(Outbox.attempts > 0, col(Outbox.not_before) <= now))).one()
            held = s.exec(select(func.count()).select_from(Quarantine).where(Quarantine.status == "held")).one()
        for name, doc, values in (("mailbot_cases_open", "Cases not yet answered or closed, by brand", open_by),
                                  ("mailbot_cases_overdue", "Open cases past their deadline, by brand", overdue_by)):
            family = GaugeMetricFamily(name, doc, labels=["brand"])
            for brand in sorted({*brands, *values}):
                family.add_metric([brand], values.get(brand, 0))
            yield family
        yield GaugeMetricFamily("mailbot_outbox_depth", "Outgoing mails waiting to be sent", by_status.get("pending", 0))
        yield GaugeMetricFamily("mailbot_outbox_failed", "Outgoing mails that failed for good",
                                by_status.get("failed", 0))
        yield GaugeMetricFamily("mailbot_outbox_oldest_age_seconds", "Age of the oldest due or retried outgoing mail",
                                max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        yield GaugeMetricFamily("mailbot_quarantine_size", "Mails held in quarantine", held)


def _every_series(app: App) -> None:
    """Each counter shows every brand (and outcome) from the start, at 0."""
    for outcome in Outcome:
        counters.MAILS_IN.labels(outcome=outcome.value)
    for brand in app.config.brands:
        for counter in (counters.CASES_OPENED, counters.SLA_BREACHES, counters.ACK_BREACHES):
            counter.labels(brand=brand.key)
        counters.MAILS_SENT.labels(brand=brand.key, kind="acknowledgement")


def render(app: App) -> bytes:
    """The `/metrics` body (raises if the database cannot be read: the scrape fails)."""
    _every_series(app)
    gauges = CollectorRegistry()
    gauges.register(_DatabaseGauges(app))
    return generate_latest(counters.REGISTRY) + generate_latest(gauges)


def collect(app: App) -> dict[str, float]:
    """Every series of `/metrics` by name (`name{label="value"}` too), summed over labels
    by name: what a test or a health check reads."""
    _every_series(app)
    gauges = CollectorRegistry()
    gauges.register(_DatabaseGauges(app))
    out: dict[str, float] = {}
    for registry in (counters.REGISTRY, gauges):
        for family in registry.collect():
            for sample in family.samples:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
                if sample.labels:
                    labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                    out[f"{sample.name}{{{labels}}}"] = sample.value
    return out
