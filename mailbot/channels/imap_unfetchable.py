"""Mails the IMAP server keeps in the folder but will not give ("unfetchable").

A damaged message in the server's store makes any FETCH holding it fail
(Gmail: ``NO Some messages could not be FETCHed``), or come back without a
body (NIL), or not at all. The poller fetches around it (see
`imap_commands.fetch`), leaves it in the folder untouched, and:

- logs it at once, at WARNING, with its UID, Message-ID (when the server
  gives the headers) and the server's words;
- tries it again alone every `retry_every` seconds (logged at DEBUG; at INFO
  when it comes through at last, and it is then ingested as any mail);
- keeps a row in ``imap_unfetchable`` so that `mailbot imap check` lists it,
  until the mail is fetched or leaves the folder (moved or deleted by hand).

The poller's I/O thread reports (`refused`, `fetched`); the thread that owns
the pass reads and saves (`split`, `save`), between passes' rounds.
"""

from __future__ import annotations

import email.parser
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from sqlmodel import col, delete, select

from mailbot import db
from mailbot.app import App
from mailbot.channels import imap_commands
from mailbot.mail.parsing import header_str, normalise_message_id
from mailbot.models import ImapUnfetchable, utcnow

log = logging.getLogger("mailbot.imap")
MESSAGE_ID_ITEM = b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
MESSAGE_ID_FIELD = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"


@dataclass
class Held:
    uid: int
    reason: str
    message_id: str | None
    first_seen: datetime
    last_tried: datetime
    retry_at: float  # time.monotonic()
    attempts: int = 1


def message_id_of(header: object) -> str | None:
    """The Message-ID in a ``BODY[HEADER.FIELDS (MESSAGE-ID)]`` item."""
    raw = header if isinstance(header, bytes) else b""
    parsed = email.parser.BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    return normalise_message_id(header_str(parsed.get("Message-ID")))


class Unfetchable:
    """The unfetchable mails of one mailbox, in memory and in ``imap_unfetchable``."""

    def __init__(self, app: App, account: str, retry_every: float) -> None:
        self.app = app
        self.account = account
        self.retry_every = retry_every
        self.uidvalidity: int | None = None
        self._held: dict[int, Held] = {}
        self._changed: set[int] = set()
        self._gone: set[int] = set()
        self._stale = False  # rows of another UIDVALIDITY may be left: delete them
        self._lock = threading.Lock()

    def __contains__(self, uid: int) -> bool:
        return uid in self._held

    @property
    def uids(self) -> list[int]:
        return sorted(self._held)

    def load(self, uidvalidity: int) -> None:
        """Start from the rows of this UIDVALIDITY (each is retried at the next pass);
        rows of another UIDVALIDITY name other mails: they go at the next `save`."""
        if self.uidvalidity == uidvalidity:
            return
        self.uidvalidity = uidvalidity
        self._held.clear()
        now = time.monotonic()
        with db.read_scope(self.app.engine) as session:
            rows = session.exec(select(ImapUnfetchable).where(
                ImapUnfetchable.account == self.account,
                ImapUnfetchable.uidvalidity == uidvalidity)).all()
            for r in rows:
                self._held[r.uid] = Held(r.uid, r.reason, r.message_id, r.first_seen, r.last_tried, now,
                                         r.attempts)
        self._changed.clear()
        self._gone.clear()
        self._stale = True

    def split(self, in_folder: Sequence[int]) -> tuple[list[int], list[int]]:
        """(UIDs to fetch in batches, held UIDs due for another try, each alone).
        Held mails no longer in the folder are forgotten (logged at INFO)."""
        present = set(in_folder)
        now = time.monotonic()
        with self._lock:
            for uid in [u for u in self._held if u not in present]:
                held = self._held.pop(uid)
                self._gone.add(uid)
                log.info("imap unfetchable mail uid %d left the folder", uid,
                         extra={"event": "imap.unfetchable_gone", "account": self.account, "uid": uid,
                                "message_id": held.message_id})
            due = [u for u in in_folder if u in self._held and self._held[u].retry_at <= now]
            rest = [u for u in in_folder if u not in self._held]
        return rest, due

    def refused(self, client: IMAPClient, folder: str, reasons: Mapping[int, str]) -> None:
        """The server would not give these: log (WARNING the first time) and hold them."""
        if not reasons:
            return
        fresh = [uid for uid in reasons if uid not in self._held]
        details = self._details(client, fresh)
        now, wall = time.monotonic(), utcnow()
        with self._lock:
            for uid, reason in sorted(reasons.items()):
                held = self._held.get(uid)
                if held is None:
                    message_id, size = details.get(uid, (None, None))
                    held = self._held[uid] = Held(uid, reason, message_id, wall, wall, now)
                    log.warning(
                        "imap: the server will not give uid %d of %s (%s); left in the folder, "
                        "tried again every %d s", uid, folder, reason, self.retry_every,
                        extra={"event": "imap.unfetchable", "account": self.account, "uid": uid,
                               "message_id": message_id, "size": size, "reason": reason})
                else:
                    held.attempts += 1
                    held.reason, held.last_tried = reason, wall
                    log.debug("imap uid %d still unfetchable (%s)", uid, reason,
                              extra={"event": "imap.still_unfetchable", "account": self.account, "uid": uid,
                                     "attempts": held.attempts})
                held.retry_at = now + self.retry_every
                self._changed.add(uid)

    def fetched(self, uids: Iterable[int]) -> None:
        """These came through: no longer held."""
        with self._lock:
            for uid in uids:
                held = self._held.pop(uid, None)
                if held is not None:
                    self._gone.add(uid)
                    log.info("imap uid %d fetched at last after %d tries", uid, held.attempts,
                             extra={"event": "imap.unfetchable_fetched", "account": self.account, "uid": uid,
                                    "message_id": held.message_id})

    def save(self) -> None:
        """Write what changed to ``imap_unfetchable`` (raises the database's errors)."""
        with self._lock:
            changed = [self._held[u] for u in sorted(self._changed) if u in self._held]
            gone = sorted(self._gone - set(self._held))
            stale = self._stale
            self._changed.clear()
            self._gone.clear()
            self._stale = False
        if not (changed or gone or stale):
            return
        with db.session_scope(self.app.engine) as session:
            mine = col(ImapUnfetchable.account) == self.account
            if stale:
                session.exec(delete(ImapUnfetchable).where(
                    mine, col(ImapUnfetchable.uidvalidity) != self.uidvalidity))  # type: ignore[call-overload]
            if gone:
                session.exec(delete(ImapUnfetchable).where(
                    mine, col(ImapUnfetchable.uid).in_(gone)))  # type: ignore[call-overload]
            for h in changed:
                row = session.get(ImapUnfetchable, (self.account, h.uid)) or ImapUnfetchable(
                    account=self.account, uid=h.uid, uidvalidity=self.uidvalidity or 0, first_seen=h.first_seen)
                row.uidvalidity = self.uidvalidity or 0
                row.message_id = (h.message_id or None) and h.message_id[:1000]
                row.reason, row.last_tried, row.attempts = h.reason[:1000], h.last_tried, h.attempts
                session.add(row)

    def _details(self, client: IMAPClient, uids: list[int]) -> dict[int, tuple[str | None, int | None]]:
        """Message-ID and size of newly refused mails, for the log (best effort)."""
        if not uids:
            return {}
        try:
            got = imap_commands.fetch(client, uids, [MESSAGE_ID_ITEM, b"RFC822.SIZE"])
        except IMAPClientAbortError:
            raise
        except IMAPClientError:
            return {}
        out: dict[int, tuple[str | None, int | None]] = {}
        for uid, item in got.data.items():
            size = item.get(b"RFC822.SIZE")
            out[uid] = (message_id_of(item.get(MESSAGE_ID_FIELD)), size if isinstance(size, int) else None)
        return out
