"""The IMAP poller against real servers' habits (issue #28), on the scripted server
of tests/imapserver.py: Gmail's extra FETCH items, Exchange's keep-alives, Courier
without MOVE, messages the store cannot render, servers that end IDLE themselves.

What a user would notice is asserted: every mail recorded once and filed away,
nothing lost or left behind, the log and `mailbot imap check` saying what is
wrong, and how many commands a second the server gets while nothing happens.
docs/operations.md ("IMAP servers' habits") lists each habit with its test.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from mailbot.app import App
from mailbot.channels import imap as imap_module
from mailbot.channels.imap import ImapPoller
from mailbot.channels.imap_check import reconcile
from mailbot.config import ImapConfig
from mailbot.ingest.pipeline import Outcome
from mailbot.models import ImapUnfetchable, Inbound
from tests import procs, test_imap
from tests.conftest import config_data
from tests.imapserver import REFUSED, ScriptedImap
from tests.test_cli import subprocess_cli, write_config
from tests.test_imap import FAST, cases, complaint, count

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
pytestmark = SQLITE_ONLY  # the database side is tested on both in test_imap.py
wait_until = functools.partial(procs.wait_until, timeout=10.0, every=0.02)
SUPPORT = "support@kalra-plus.com"
pollers = test_imap.pollers  # the fixture: pollers(app, cfg) -> an ImapPoller stopped after the test


def mailbox(server: ScriptedImap, tmp_path: Path, **over: Any) -> ImapConfig:
    pw = tmp_path / "imap.pw"
    pw.write_text("pw\n")
    data: dict[str, Any] = {"host": server.host, "port": server.port, "tls": False, "username": SUPPORT,
                            "password_file": str(pw), "batch_size": 50, **over}
    return ImapConfig(**data)


def recorded_ids(app: App) -> list[str]:
    with Session(app.engine) as s:
        return sorted(m for m in s.exec(select(Inbound.message_id)).all() if m)


def ids_of(raws: list[bytes]) -> list[str]:
    return sorted(r.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode() for r in raws)


def imap_records(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mailbot.imap" and r.levelno >= level]


# ---------------------------------------------------------------- habits that must simply work
HABITS: dict[str, dict[str, Any]] = {
    "as Dovecot": {},
    "items in any order (BODY[] first)": {"body_first": True},
    "Gmail's X-GM items first, a label holding ' UID 1'": {"gmail_items": True},
    "INTERNALDATE and BODY[] in two FETCH responses": {"split_fetch": True},
    "a body as a quoted string": {"quoted_bodies": True},
    "every response cut into 1-byte writes": {"write_size": 1},
    "ALERT, EXPUNGE, EXISTS and FETCH FLAGS inside a FETCH reply": {"unsolicited_in_fetch": True},
    "no MOVE, UIDPLUS (Courier)": {"capabilities": ("IMAP4rev1", "IDLE", "UIDPLUS")},
    "no MOVE, no UIDPLUS": {"capabilities": ("IMAP4rev1", "IDLE")},
    "a slow server (50 ms a command)": {"delay": 0.05},
}


@pytest.mark.parametrize("habit", HABITS.values(), ids=HABITS.keys())
def test_every_mail_is_recorded_once_and_filed_whatever_the_habit(
        app: App, scripted_imap: Callable[..., ScriptedImap], tmp_path: Path, habit: dict[str, Any]) -> None:
    server = scripted_imap(**habit)
    raws = [complaint(i, sender=f"client{i}@example.test") for i in range(7)]
    for raw in raws:
        server.append(raw)
    server.append(b"Subject: one line, no body", internaldate=datetime(2026, 12, 1, 9, tzinfo=UTC))
    server.append(complaint(99), broken="vanishes")  # another client deletes it meanwhile

    handled = ImapPoller(app, mailbox(server, tmp_path, batch_size=3), FAST).poll_once()

    assert handled == 8
    assert recorded_ids(app) == ids_of(raws)  # each once: none lost, none taken for another
    assert count(app, Inbound) == 8
    assert {f"client{i}@example.test" for i in range(7)} <= {c.customer_email for c in cases(app)}
    assert server.uids("INBOX") == []
    assert sorted(server.raws("Processed") + server.raws("Quarantine")) == sorted(
        [*raws, b"Subject: one line, no body"])
    assert all(b"\\Seen" in f for f in server.flags("Processed").values())


def test_a_gmail_label_holding_uid_text_loses_no_mail(app: App, scripted_imap, tmp_path: Path) -> None:
    """Item 1: ``X-GM-LABELS ("\\Inbox" "Ticket UID 1") UID 2 BODY[] {…}``. The hand-written
    reader took UID 1 from the label: mail 1 was recorded as a duplicate of mail 2 and
    moved to Processed, never ingested."""
    server = scripted_imap(gmail_items=True)
    server.append(complaint(1, sender="first@example.test"))
    server.append(complaint(2, sender="second@example.test"))

    assert ImapPoller(app, mailbox(server, tmp_path), FAST).poll_once() == 2

    assert sorted(c.customer_email for c in cases(app)) == ["first@example.test", "second@example.test"]


def test_internaldate_sent_apart_from_the_body_is_the_arrival_time(app: App, scripted_imap,
                                                                   tmp_path: Path) -> None:
    """Item 2: INTERNALDATE and BODY[] in two FETCH responses for the same message. The
    case's clocks start when the mail reached the mailbox, not when it was fetched."""
    server = scripted_imap(split_fetch=True)
    arrived = (app.now() - timedelta(days=3)).replace(microsecond=0)
    server.append(complaint(1), internaldate=arrived)

    assert ImapPoller(app, mailbox(server, tmp_path), FAST).poll_once() == 1

    case, = cases(app)
    assert case.received_at == arrived
    with Session(app.engine) as s:
        assert s.exec(select(Inbound.received_at)).one() == arrived


def test_a_5_mb_mail_and_a_connection_closed_mid_literal(app: App, scripted_imap, pollers,
                                                         tmp_path: Path) -> None:
    """The second body FETCH is cut in the middle of its literal and the connection
    closed: the poller reconnects, and each mail is recorded once."""
    server = scripted_imap(cut_in_literal=2)
    big = complaint(0)[:-2] + b"Relev\xc3\xa9 joint.\r\n" + (b"A" * 998 + b"\r\n") * 5_000
    raws = [big] + [complaint(i) for i in range(1, 6)]
    for raw in raws:
        server.append(raw)
    poller = pollers(app, mailbox(server, tmp_path, batch_size=2))
    poller.start()
    wait_until(lambda: not server.uids("INBOX"), timeout=20, what="the folder drained")
    assert poller.connects == 2
    assert recorded_ids(app) == ids_of(raws) and len(cases(app)) == 6
    assert big in server.raws("Processed")


def test_uids_go_out_as_ranges_within_a_1000_octet_line(app: App, scripted_imap, tmp_path: Path) -> None:
    """Item 3, second part: 150 mails with 6-digit UIDs in one batch made a FETCH, a
    STORE and a MOVE of over 1,000 octets: a server with a line limit refused each pass
    (as 8 KB did with batch_size = 2000)."""
    server = scripted_imap(first_uid=100_000, line_limit=1000)
    raws = [complaint(i) for i in range(150)]
    for raw in raws:
        server.append(raw)

    assert ImapPoller(app, mailbox(server, tmp_path, batch_size=150), FAST).poll_once() == 150

    assert server.uids("INBOX") == [] and server.folder_count("Processed") == 150
    assert max(len(c.line) for c in server.commands) + 2 <= 1000
    assert any(c.line.split(b" ")[3].startswith(b"100000:") for c in server.commands if c.verb == "UID MOVE")


# ---------------------------------------------------------------- mail the server will not give
BROKEN = {
    "refused FETCH (Gmail's NO)": "no",
    "only its body refused": "no-body",
    "BODY[] NIL": "nil",
    "left out of the answer": "absent",
}


@pytest.mark.parametrize("broken", BROKEN.values(), ids=BROKEN.keys())
def test_a_mail_the_server_will_not_give_is_left_and_the_folder_goes_on(
        app: App, scripted_imap, tmp_path: Path, caplog: pytest.LogCaptureFixture, broken: str) -> None:
    """Items 3 and 7: one unfetchable mail blocked the folder (a refused batch aborted
    every pass; the batch before it was re-read as duplicates forever) or was silently
    skipped. Now the others are ingested and filed, it stays in place, the log says so
    at once with its UID, `imap check` lists it, and it is tried again later, alone."""
    server = scripted_imap()
    raws = [complaint(i) for i in range(1, 8)]
    uids = [server.append(raw, broken=broken if i == 3 else None) for i, raw in enumerate(raws, 1)]
    cfg = mailbox(server, tmp_path, batch_size=2)
    timings = replace(FAST, unfetchable_retry=600.0)
    poller = ImapPoller(app, cfg, timings)

    with caplog.at_level(logging.INFO, logger="mailbot.imap"):
        assert poller.poll_once() == 6
    assert server.uids("INBOX") == [uids[2]]
    assert server.flags("INBOX") == {uids[2]: set()}  # untouched, unseen
    assert server.folder_count("Processed") == 6
    warned = [r for r in caplog.records if r.name == "mailbot.imap" and r.levelno >= logging.WARNING]
    assert len(warned) == 1 and f"uid {uids[2]} of INBOX" in warned[0].getMessage()
    assert warned[0].uid == uids[2] and warned[0].event == "imap.unfetchable"
    if broken == "no":  # the server's own words; it gives not even the headers
        assert REFUSED.decode() in warned[0].getMessage() and warned[0].message_id is None
    else:
        assert warned[0].message_id == ids_of([raws[2]])[0]
    report = reconcile(app, cfg, now=app.now() + timedelta(hours=2))
    assert [m.uid for m in report.unfetchable] == [uids[2]] and report.stuck == []
    assert f"unfetchable: INBOX uid {uids[2]}" in "\n".join(report.lines())

    fetches = server.body_fetches
    assert poller.poll_once() == 0
    assert server.body_fetches == fetches  # not tried again before unfetchable_retry
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="mailbot.imap"):
        assert ImapPoller(app, cfg, timings).poll_once() == 0  # after a restart: tried at once
        assert server.body_fetches > fetches
        assert imap_records(caplog) == []  # known already: not a second warning
        server.repair(uids[2])
        assert ImapPoller(app, cfg, timings).poll_once() == 1
    assert any(f"uid {uids[2]} fetched at last" in m for m in imap_records(caplog, logging.INFO))
    assert recorded_ids(app) == ids_of(raws)
    assert reconcile(app, cfg).problems == 0
    with Session(app.engine) as s:
        assert s.exec(select(ImapUnfetchable)).all() == []


def test_after_a_uidvalidity_change_the_unfetchable_mail_is_known_by_its_new_uid(
        app: App, scripted_imap, tmp_path: Path) -> None:
    server = scripted_imap()
    server.append(complaint(1))
    server.append(complaint(2), broken="nil")
    cfg = mailbox(server, tmp_path)
    assert ImapPoller(app, cfg, FAST).poll_once() == 1
    server.append(complaint(3))
    server.reset_uidvalidity()  # INBOX now: uid 1 (the broken one), uid 2

    assert ImapPoller(app, cfg, FAST).poll_once() == 1

    with Session(app.engine) as s:
        rows = s.exec(select(ImapUnfetchable)).all()
    assert [(r.uid, r.uidvalidity) for r in rows] == [(1, 1001)]
    assert [m.uid for m in reconcile(app, cfg).unfetchable] == [1]


@pytest.mark.slow  # a fresh process: left out by `make test-fast`
def test_imap_check_names_an_unfetchable_mail_in_a_fresh_process(
        make_app: Callable[..., App], db_url: str, scripted_imap, tmp_path: Path) -> None:
    server = scripted_imap()
    server.append(complaint(1))
    uid = server.append(complaint(2, message_id="<broken.2@example.test>"), broken="nil")
    cfg = mailbox(server, tmp_path)
    app = make_app()
    ImapPoller(app, cfg, FAST).poll_once()
    path = write_config(tmp_path / "config.toml",
                        config_data(tmp_path, db_url, imap=[cfg.model_dump(exclude_defaults=True)]))

    p = subprocess_cli("--config", str(path), "imap", "check")

    out = p.stdout.decode()
    assert p.returncode == 1, out + p.stderr.decode()
    assert "1 unfetchable" in out and "PROBLEMS" in out
    assert f"unfetchable: INBOX uid {uid} <broken.2@example.test> since " in out
    assert "BODY[] NIL" in out


def test_a_temporary_refusal_fails_the_pass_and_holds_nothing(app: App, scripted_imap,
                                                              tmp_path: Path) -> None:
    """NO [UNAVAILABLE] (RFC 5530) is the server's trouble, not the mail's: the pass is
    retried later and no mail is set aside."""
    server = scripted_imap(refusal=b"[UNAVAILABLE] try again later")
    server.append(complaint(1))
    server.append(complaint(2), broken="no")
    poller = ImapPoller(app, mailbox(server, tmp_path), FAST)
    with pytest.raises(imap_module.IMAPClient.Error, match="UNAVAILABLE"):
        poller.poll_once()
    assert poller.unfetchable.uids == [] and count(app, Inbound) == 0


# ---------------------------------------------------------------- folders follow the record
def test_a_quarantined_mail_fetched_again_after_bye_goes_to_quarantine(
        app: App, scripted_imap, pollers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 4: ``* BYE`` in the middle of the second FETCH, after the first batch was
    committed and before it was moved. The next pass fetches that batch again: its
    quarantined mail comes back as a duplicate and still goes to Quarantine."""
    server = scripted_imap(bye_in_fetch=2)
    garbage = b"\x00\x00not a mail at all"
    raws = [garbage] + [complaint(i) for i in range(1, 6)]
    for raw in raws:
        server.append(raw)
    cfg = mailbox(server, tmp_path, batch_size=2)
    poller = pollers(app, cfg)
    outcomes: list[Outcome] = []
    real = imap_module.record

    def record(app_: App, pending: Any, **kw: Any) -> list:
        results = real(app_, pending, **kw)
        outcomes.extend(r.outcome for r in results)
        return results

    monkeypatch.setattr(imap_module, "record", record)
    poller.start()
    wait_until(lambda: not server.uids("INBOX"), timeout=20, what="the folder drained")

    assert poller.connects == 2
    assert Outcome.DUPLICATE in outcomes  # the first batch was indeed fetched again
    assert server.raws("Quarantine") == [garbage]
    assert sorted(server.raws("Processed")) == sorted(raws[1:])
    assert reconcile(app, cfg).problems == 0


def test_imap_check_reports_a_quarantined_mail_filed_as_processed(app: App, scripted_imap,
                                                                 tmp_path: Path) -> None:
    server = scripted_imap()
    garbage = b"\x00\x00not a mail at all"
    server.append(garbage)
    cfg = mailbox(server, tmp_path)
    assert ImapPoller(app, cfg, FAST).poll_once() == 1
    server.append(garbage, folder="Processed")  # as the poller did before issue #28

    report = reconcile(app, cfg)

    assert [m.folder for m in report.misfiled] == ["Processed"] and report.problems == 1
    assert "misfiled: Processed uid 1 (no Message-ID) is recorded as quarantined" in "\n".join(report.lines())


# ---------------------------------------------------------------- IDLE: no storm, no needless reconnect
STORMS = {
    "Exchange: '* OK Still here' in the packet of '+ idling'": {
        "idle_continuation": b"+ idling\r\n* OK Still here\r\n"},
    "an unchanged '* n EXISTS' after every SEARCH": {"exists_after_search": True},
    "keep-alives every 0.1 s": {"idle_keepalive": 0.1},
}


@pytest.mark.parametrize("habit", STORMS.values(), ids=STORMS.keys())
def test_no_command_storm_while_idle(app: App, scripted_imap, pollers, tmp_path: Path,
                                     habit: dict[str, Any]) -> None:
    """Item 5: these sent the poller into SELECT/SEARCH/IDLE/DONE at ~91 commands a
    second, forever. Waiting for mail costs no command; new mail still comes in."""
    server = scripted_imap(**habit)
    server.append(complaint(0))
    poller = pollers(app, mailbox(server, tmp_path))
    poller.start()
    wait_until(lambda: len(cases(app)) == 1, what="the first mail")
    assert poller.wait_idle(5)
    t0 = time.monotonic()
    time.sleep(1.0)  # the measurement: commands sent in one second of waiting
    assert server.commands_per_second(t0) == 0, server.verbs(t0)[:20]

    server.append(complaint(1))
    wait_until(lambda: len(cases(app)) == 2, timeout=3, what="new mail during IDLE")


def test_the_loop_detector_backs_off_from_wake_ups_without_mail(
        app: App, scripted_imap, pollers, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A server whose IDLE keeps announcing a higher EXISTS with no new mail: after three
    empty passes in a row the poller passes at most once per poll_interval (logged once),
    still takes new mail, and goes back to IDLE once mail comes."""
    server = scripted_imap(phantom_exists=0.02)
    poller = pollers(app, mailbox(server, tmp_path, poll_interval=0.5))
    with caplog.at_level(logging.INFO, logger="mailbot.imap"):
        poller.start()
        wait_until(lambda: any("passes in a row found no new mail" in m for m in imap_records(caplog)),
                   what="the loop detector")
        t0 = time.monotonic()
        time.sleep(2.0)  # the measurement
        selects = server.verbs(t0).count("SELECT")
        assert selects <= 5, server.verbs(t0)  # one pass per 0.5 s (plus one in flight)
        assert server.commands_per_second(t0) <= 3.0
        assert len([m for m in imap_records(caplog) if "no new mail" in m]) == 1
        assert "woken by: new mail: * " in imap_records(caplog)[0]

        server.append(complaint(1))
        wait_until(lambda: len(cases(app)) == 1, timeout=3, what="mail while throttled")
        wait_until(lambda: any("back to IDLE" in m for m in imap_records(caplog, logging.INFO)),
                   what="the return to IDLE")


IDLE_HABITS = {
    "untagged data before '+'": {"before_continuation": b"* OK [ALERT] maintenance at 22:00\r\n"},
    "the server ends IDLE with a tagged OK": {"idle_ends_after": 1.0},
    "IDLE lines written a byte at a time": {"idle_split_writes": True},
}


@pytest.mark.parametrize("habit", IDLE_HABITS.values(), ids=IDLE_HABITS.keys())
def test_ordinary_idle_habits_cost_no_reconnect_and_no_error(
        app: App, scripted_imap, pollers, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        habit: dict[str, Any]) -> None:
    """Item 6: each of these cost a reconnect and an error-level traceback."""
    server = scripted_imap(**habit)
    poller = pollers(app, mailbox(server, tmp_path, poll_interval=0.3))
    with caplog.at_level(logging.INFO, logger="mailbot.imap"):
        poller.start()
        for i in range(3):
            assert poller.wait_idle(5)
            server.append(complaint(i))
            wait_until(lambda i=i: len(cases(app)) == i + 1, timeout=3, what=f"mail {i}")
        if "idle_ends_after" in habit:
            time.sleep(1.2)  # at least one IDLE ended by the server
    assert server.logins == 1 and poller.connects == 1
    assert imap_records(caplog) == []
