"""What this process did, counted for `/metrics` (prometheus_client counters).

A counter counts events as this process records them: it only goes up (a
retention purge or a quarantine retry that deletes rows takes nothing off it)
and starts at 0 with the process, which Prometheus reads as a counter reset.
Several instances each export their own: sum them in the query. What is open,
overdue or waiting now is a gauge read from the database at each scrape
(mailbot.ops.metrics).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics

disable_created_metrics()  # no `_created` series beside each counter
REGISTRY = CollectorRegistry()

MAILS_IN = Counter("mailbot_mails_in", "Inbound mails recorded (all channels), by outcome", ["outcome"],
                   registry=REGISTRY)
CASES_OPENED = Counter("mailbot_cases_opened", "Cases opened, by brand", ["brand"], registry=REGISTRY)
MAILS_SENT = Counter("mailbot_mails_sent", "Mails handed to the relay, by brand and kind", ["brand", "kind"],
                     registry=REGISTRY)
MAILS_FAILED = Counter("mailbot_mails_failed", "Mails that failed for good, by brand and kind",
                       ["brand", "kind"], registry=REGISTRY)
SLA_BREACHES = Counter("mailbot_sla_breaches", "Escalations at deadline breach, by brand", ["brand"],
                       registry=REGISTRY)
ACK_BREACHES = Counter("mailbot_ack_breaches", "Acknowledgement deadlines missed, by brand", ["brand"],
                       registry=REGISTRY)
