"""`mailbot imap check`: each mailbox compared with what the database recorded.

For each configured mailbox, the folder, the processed folder and the
quarantine folder are listed (UID, Message-ID, size, INTERNALDATE) and
reported as problems:

- **not ingested**: in the processed or quarantine folder, unknown to the
  database (by Message-ID, else by the sha256 of its bytes) — moved there by
  hand, or the database was restored from an older backup;
- **misfiled**: in the processed folder although its record says quarantined;
- **unfetchable**: in the folder, and the server will not give it (the poller
  recorded it in ``imap_unfetchable`` with the server's words, or the check's
  own FETCH was refused);
- **stuck**: in the folder for more than 30 minutes otherwise (the poller is
  not running, cannot log in, or the database is down).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from imapclient import IMAPClient
from sqlmodel import col, select

from mailbot import db
from mailbot.app import App
from mailbot.channels import imap_commands
from mailbot.channels.imap import as_utc, batched, connect, describe_error
from mailbot.channels.imap_unfetchable import MESSAGE_ID_FIELD, MESSAGE_ID_ITEM, message_id_of
from mailbot.config import ImapConfig
from mailbot.models import ImapUnfetchable, Inbound

log = logging.getLogger("mailbot.imap")


@dataclass(frozen=True)
class ServerMessage:
    folder: str
    uid: int
    message_id: str | None
    size: int
    internaldate: datetime | None
    note: str = ""  # why it is reported (unfetchable: the server's words)


@dataclass
class ReconcileReport:
    """What `mailbot imap check` found for one mailbox."""

    account: str
    counts: dict[str, int] = field(default_factory=dict)
    not_ingested: list[ServerMessage] = field(default_factory=list)
    misfiled: list[ServerMessage] = field(default_factory=list)
    unfetchable: list[ServerMessage] = field(default_factory=list)
    stuck: list[ServerMessage] = field(default_factory=list)
    error: str | None = None

    @property
    def problems(self) -> int:
        return (len(self.not_ingested) + len(self.misfiled) + len(self.unfetchable) + len(self.stuck)
                + (1 if self.error else 0))

    def lines(self) -> list[str]:
        if self.error:
            return [f"{self.account}: ERROR {self.error}"]
        folders = ", ".join(f"{name} {n}" for name, n in self.counts.items())
        extra = "".join(f", {len(found)} {what}" for what, found in (
            ("misfiled", self.misfiled), ("unfetchable", self.unfetchable)) if found)
        head = (f"{self.account}: {folders}; {len(self.not_ingested)} not ingested{extra}, "
                f"{len(self.stuck)} stuck -> {'OK' if not self.problems else 'PROBLEMS'}")
        out = [head]
        for m in self.not_ingested:
            out.append(f"  not ingested: {m.folder} uid {m.uid} {_mid(m)} {m.size} bytes")
        for m in self.misfiled:
            out.append(f"  misfiled: {m.folder} uid {m.uid} {_mid(m)} is recorded as quarantined "
                       "(move it to the quarantine folder)")
        for m in self.unfetchable:
            out.append(f"  unfetchable: {m.folder} uid {m.uid} {_mid(m)} since {_since(m.internaldate)}: "
                       f"{m.note}")
        for m in self.stuck:
            out.append(f"  stuck: {m.folder} uid {m.uid} {_mid(m)} since {_since(m.internaldate)}")
        return out


def _mid(m: ServerMessage) -> str:
    return m.message_id or "(no Message-ID)"


def _since(when: datetime | None) -> str:
    return when.isoformat(timespec="seconds") if when else "?"


def reconcile(app: App, cfg: ImapConfig, *, stuck_after: timedelta = timedelta(minutes=30),
              now: datetime | None = None) -> ReconcileReport:
    """Compare the mailbox (folder, processed and quarantine folders) with the database.

    Messages still in the folder are only reported when the poller found them
    unfetchable, or when older than `stuck_after` (newer ones are simply waiting
    for the poller)."""
    report = ReconcileReport(cfg.account_key)
    cutoff = (now or app.now()) - stuck_after
    try:
        client = connect(cfg)
    except Exception as exc:
        report.error = describe_error(exc)[0]
        return report
    try:
        for folder in (cfg.folder, cfg.processed_folder, cfg.quarantine_folder):
            listing = _Listing(client, folder)
            report.counts[folder] = len(listing.messages)
            if folder == cfg.folder:
                held = _held(app, cfg.account_key, listing.uidvalidity)
                for m in listing.messages:
                    note = listing.refused.get(m.uid) or held.get(m.uid)
                    if note:
                        report.unfetchable.append(ServerMessage(m.folder, m.uid, m.message_id, m.size,
                                                                m.internaldate, note))
                    elif m.internaldate and m.internaldate < cutoff:
                        report.stuck.append(m)
            else:
                missing, quarantined = _recorded(app, client, folder, listing.messages)
                report.not_ingested += missing
                if folder == cfg.processed_folder:
                    report.misfiled += quarantined
    except Exception as exc:
        report.error = describe_error(exc)[0]
    finally:
        with contextlib.suppress(Exception):
            client.logout()
    return report


def reconcile_all(app: App) -> int:
    """`mailbot imap check`: one report per configured mailbox on stdout; the number of problems."""
    problems = 0
    for cfg in app.config.imap:
        report = reconcile(app, cfg)
        for line in report.lines():
            print(line)
        problems += report.problems
        log.info("imap reconcile", extra={"account": cfg.account_key, "problems": report.problems,
                                          "not_ingested": len(report.not_ingested),
                                          "misfiled": len(report.misfiled),
                                          "unfetchable": len(report.unfetchable),
                                          "stuck": len(report.stuck)})
    return problems


class _Listing:
    """The messages of one folder (read-only), and those whose headers the server refused."""

    def __init__(self, client: IMAPClient, folder: str) -> None:
        self.messages: list[ServerMessage] = []
        self.refused: dict[int, str] = {}
        self.uidvalidity: int | None = None
        if not client.folder_exists(folder):
            return
        info = client.select_folder(folder, readonly=True)
        self.uidvalidity = int(info[b"UIDVALIDITY"])
        uids = sorted(client.search(["NOT", "DELETED"]))
        got = imap_commands.fetch(client, uids, [MESSAGE_ID_ITEM, b"RFC822.SIZE", b"INTERNALDATE"])
        self.refused = got.refused
        for uid in uids:
            d = got.data.get(uid, {})
            if d or uid in got.refused:
                size = d.get(b"RFC822.SIZE", 0)
                self.messages.append(ServerMessage(folder, uid, message_id_of(d.get(MESSAGE_ID_FIELD)),
                                                   size if isinstance(size, int) else 0,
                                                   as_utc(d.get(b"INTERNALDATE"))))


def _held(app: App, account: str, uidvalidity: int | None) -> dict[int, str]:
    """What the poller recorded as unfetchable in this folder: UID -> the server's words."""
    with db.read_scope(app.engine) as session:
        rows = session.exec(select(ImapUnfetchable).where(
            ImapUnfetchable.account == account, ImapUnfetchable.uidvalidity == uidvalidity)).all()
        return {r.uid: r.reason for r in rows}


def _recorded(app: App, client: IMAPClient, folder: str, messages: list[ServerMessage]
              ) -> tuple[list[ServerMessage], list[ServerMessage]]:
    """(messages of `folder` the database does not know, those it recorded as quarantined),
    matched by Message-ID, then by content."""
    by_id = _outcomes(app, Inbound.message_id, {m.message_id for m in messages if m.message_id})
    unmatched = [m for m in messages if m.message_id not in by_id]
    by_sha: dict[str, set[str]] = {}
    digests: dict[int, str] = {}
    if unmatched:
        digests = _digests(client, folder, [m.uid for m in unmatched])
        by_sha = _outcomes(app, Inbound.sha256, set(digests.values()))
    missing, quarantined = [], []
    for m in messages:
        outcomes = by_id.get(m.message_id or "") or by_sha.get(digests.get(m.uid, ""))
        if not outcomes:
            missing.append(m)
        elif outcomes == {"quarantined"}:
            quarantined.append(m)
    return missing, quarantined


def _outcomes(app: App, column: object, values: Iterable[str], chunk: int = 500) -> dict[str, set[str]]:
    """value -> the outcomes of the inbound rows that have it."""
    ordered = sorted(v for v in values if v)
    found: dict[str, set[str]] = {}
    with db.read_scope(app.engine) as session:
        for i in range(0, len(ordered), chunk):
            part = ordered[i:i + chunk]
            for value, outcome in session.exec(select(column, Inbound.outcome).where(col(column).in_(part))):
                found.setdefault(value, set()).add(outcome)
    return found


def _digests(client: IMAPClient, folder: str, uids: list[int]) -> dict[int, str]:
    client.select_folder(folder, readonly=True)
    out: dict[int, str] = {}
    for part in batched(uids, 50):
        for uid, (raw, _date) in imap_commands.fetch_bodies(client, part).mails.items():
            out[uid] = hashlib.sha256(raw).hexdigest()
    return out

