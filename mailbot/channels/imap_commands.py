"""The IMAP commands the poller sends, shaped for what real servers accept.

- **Short command lines.** UIDs go out as ranges (``1:250,252:400``) in
  STORE, MOVE, COPY and UID EXPUNGE. imapclient's `fetch` takes a list of
  UIDs, not ranges, so a FETCH is cut into commands of at most
  `FETCH_SET_LIMIT` characters of UIDs. Servers refuse longer lines (8 KB is a
  common limit): a ``batch_size`` of 2,000 UIDs once made every pass fail.
- **A refused FETCH is narrowed down.** A server that cannot read one message
  answers the whole FETCH with a tagged ``NO`` (Gmail: "Some messages could
  not be FETCHed"), and imapclient then returns nothing at all. `fetch`
  fetches the refused part again in halves, down to the messages refused
  alone, and reports those with the server's words; everything else comes
  back. A refusal the server marks as temporary (RFC 5530 ``UNAVAILABLE``,
  ``LIMIT``, ``INUSE``) is raised instead: the poller retries the pass later.
- **A body the server will not give** — ``NIL``, or a message left out of the
  answer while it is still in the folder — is reported the same way by
  `fetch_bodies`, so the poller can say so at once and leave it in place.

Every FETCH goes through imapclient's own parser (`IMAPClient.fetch`), which
merges several FETCH responses for one message, skips items it was not asked
for (Gmail's ``X-GM-LABELS``, which may hold the text `` UID 1``) and reads
literals, quoted strings and NIL alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

BODY = b"BODY[]"
SEEN = rb"\Seen"
DELETED = rb"\Deleted"
BODY_ITEMS = (b"BODY.PEEK[]", b"INTERNALDATE")
FETCH_SET_LIMIT = 900  # characters of UIDs in one FETCH: the whole line stays under 1,000 (RFC 2683)
TEMPORARY = ("[UNAVAILABLE]", "[LIMIT]", "[INUSE]", "[OVERQUOTA]")  # RFC 5530: try again later
NIL_BODY = "the server sends no body for it (BODY[] NIL)"
LEFT_OUT = "the server leaves it out of its FETCH answers"


def uid_ranges(uids: Iterable[int]) -> list[str]:
    """UIDs as IMAP ranges of consecutive numbers: [1, 2, 3, 5, 7, 8] -> ["1:3", "5", "7:8"]."""
    out: list[str] = []
    start = prev = None
    for uid in sorted(set(uids)):
        if prev is not None and uid == prev + 1:
            prev = uid
            continue
        if start is not None:
            out.append(f"{start}:{prev}" if prev != start else f"{start}")
        start = prev = uid
    if start is not None:
        out.append(f"{start}:{prev}" if prev != start else f"{start}")
    return out


def uid_chunks(uids: Sequence[int], limit: int = FETCH_SET_LIMIT) -> Iterator[list[int]]:
    """`uids` in runs whose comma-joined text stays within `limit` characters."""
    chunk: list[int] = []
    length = 0
    for uid in uids:
        size = len(str(uid)) + 1
        if chunk and length + size > limit:
            yield chunk
            chunk, length = [], 0
        chunk.append(uid)
        length += size
    if chunk:
        yield chunk


def move(client: IMAPClient, uids: Sequence[int], folder: str) -> None:
    """MOVE when the server can, else COPY + \\Deleted + (UID) EXPUNGE; UIDs as ranges."""
    if not uids:
        return
    ranges = uid_ranges(uids)
    if client.has_capability("MOVE"):
        client.move(ranges, folder)
        return
    client.copy(ranges, folder)
    client.add_flags(ranges, [DELETED], silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(ranges)
    else:
        client.expunge()


def mark_seen(client: IMAPClient, uids: Sequence[int]) -> None:
    if uids:
        client.add_flags(uid_ranges(uids), [SEEN], silent=True)


@dataclass
class Fetched:
    """What a FETCH gave, by UID; and the UIDs the server refused, with its words."""

    data: dict[int, dict[bytes, object]] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)


def fetch(client: IMAPClient, uids: Sequence[int], items: Sequence[bytes]) -> Fetched:
    """FETCH `items` of `uids` (UIDs the server no longer has are simply absent).

    A refused command (tagged NO or BAD, or a reply imapclient cannot parse) is
    fetched again in halves until each refused message is alone: those are in
    `refused`. Raises `IMAPClientAbortError` when the connection breaks, and
    `IMAPClientError` when the server says the refusal is temporary.
    """
    out = Fetched()
    for chunk in uid_chunks(uids):
        _narrow(client, chunk, items, out)
    return out


def _narrow(client: IMAPClient, uids: list[int], items: Sequence[bytes], out: Fetched) -> None:
    try:
        data = client.fetch(uids, list(items))
    except IMAPClientAbortError:
        raise
    except IMAPClientError as exc:
        words = _server_words(exc)
        if any(code in words.upper() for code in TEMPORARY):
            raise
        if len(uids) == 1:
            out.refused[uids[0]] = words
            return
        half = len(uids) // 2
        _narrow(client, uids[:half], items, out)
        _narrow(client, uids[half:], items, out)
        return
    out.data.update(data)


def _server_words(exc: Exception) -> str:
    text = str(exc)
    for prefix in ("fetch failed: ", "FETCH failed: "):
        text = text.removeprefix(prefix)
    return text.strip()[:300] or type(exc).__name__


@dataclass
class Bodies:
    """The mails of a FETCH BODY.PEEK[], and the ones the server would not give."""

    mails: dict[int, tuple[bytes, datetime | None]] = field(default_factory=dict)  # bytes, INTERNALDATE
    refused: dict[int, str] = field(default_factory=dict)


def fetch_bodies(client: IMAPClient, uids: Sequence[int]) -> Bodies:
    """The bytes and INTERNALDATE of each of `uids`, without setting \\Seen.

    A UID whose body the server refuses, sends as NIL, or leaves out of its
    answer while still holding the message, is in `refused` with the reason; a
    UID the server no longer has (moved or deleted meanwhile) is in neither.
    """
    got = fetch(client, uids, BODY_ITEMS)
    out = Bodies(refused=dict(got.refused))
    without: dict[int, str] = {}  # no body: why, if the message is still there
    for uid in uids:
        item = got.data.get(uid)
        body = item.get(BODY) if item is not None else None
        if isinstance(body, bytes):
            date = item.get(b"INTERNALDATE") if item is not None else None
            out.mails[uid] = (body, date if isinstance(date, datetime) else None)
        elif uid not in got.refused:
            without[uid] = NIL_BODY if item is not None and BODY in item else LEFT_OUT
    if without:  # deleted meanwhile (servers answer NIL, or nothing), or kept back? Ask.
        still = set(client.search(["UID", ",".join(uid_ranges(without))]))
        out.refused.update({uid: why for uid, why in without.items() if uid in still})
    return out
