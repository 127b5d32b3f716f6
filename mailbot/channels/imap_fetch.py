"""FETCH of whole mails, read straight off the IMAP connection.

The poller fetches every mail with ``UID FETCH <uids> (UID INTERNALDATE
BODY.PEEK[])``. Through imapclient that costs ~0.09 ms of CPU a mail in the
daemon (imaplib's response loop, then imapclient's lexer over every response),
in the thread that shares the daemon's GIL with the write of the batch before:
each of those milliseconds is one the write waits. Read here instead, with
imaplib's own `send`/`readline`/`read` on the same connection, a mail costs
~0.015 ms: one line, one literal read by its length, one closing line
(bench/README.md, "eighth run").

What this reader does, and what it leaves to imapclient:

- Each ``* n FETCH`` response that carries ``BODY[]`` as a literal gives the
  mail's bytes, its UID and its INTERNALDATE (None when absent or unreadable,
  as ingest then uses the time of reception). The items may come in any order
  and around the literal.
- A requested UID whose body did not come as a literal (a server that sends
  ``BODY[]`` as a quoted string or NIL, or a response this reader does not
  recognise) is fetched again through imapclient's general parser, so
  nothing is skipped; a UID the server no longer has is simply absent from the
  result, as with imapclient.
- ``EXISTS``/``RECENT`` arriving meanwhile are filed where imaplib files them,
  so the poller still sees that new mail came (`imap._new_mail_signalled`);
  other unsolicited responses (``EXPUNGE``, flag changes, ``OK`` notices) are
  dropped, as the poller never reads them.
- A tagged ``NO``/``BAD`` raises `IMAPClientError` after the whole response is
  read (the connection stays usable); ``BYE``, a continuation request, or the
  connection ending mid-response raise `IMAPClientAbortError` (the poller then
  drops the connection, as for any error in a pass).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from datetime import datetime

from imapclient import IMAPClient
from imapclient.datetime_util import parse_to_datetime
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

BODY = b"BODY[]"
_TAGS = itertools.count(1)  # our own tags ("mbf1", …): imaplib's are upper-case letters and digits
_UNTAGGED = re.compile(rb"\* (\d+) ([A-Za-z]+)")
_UID = re.compile(rb"[( ]UID (\d+)")
_DATE = re.compile(rb'[( ]INTERNALDATE "([^"]*)"')

Fetched = tuple[bytes, datetime | None]  # the mail's bytes, its INTERNALDATE as imapclient gives it


def fetch_bodies(client: IMAPClient, uids: Sequence[int]) -> dict[int, Fetched]:
    """The bytes and INTERNALDATE of each of `uids` still in the selected folder,
    by UID, without setting \\Seen (``BODY.PEEK[]``)."""
    if not uids:
        return {}
    found = _fetch(client, uids)
    missing = {uid for uid in uids if uid not in found}
    if missing:  # not sent as a literal we recognised (or gone): imapclient's general parser
        for uid, item in client.fetch(sorted(missing), [b"BODY.PEEK[]", b"INTERNALDATE"]).items():
            body = item.get(BODY)
            if uid in missing and isinstance(body, bytes):
                date = item.get(b"INTERNALDATE")
                found[uid] = (body, date if isinstance(date, datetime) else None)
    return found


def _fetch(client: IMAPClient, uids: Sequence[int]) -> dict[int, Fetched]:
    imap = client._imap  # noqa: SLF001 - imaplib's documented send/readline/read on imapclient's connection
    tag = b"mbf%d" % next(_TAGS)
    imap.send(b"%s UID FETCH %s (UID INTERNALDATE BODY.PEEK[])\r\n" % (tag, b",".join(b"%d" % u for u in uids)))
    done = tag + b" "
    found: dict[int, Fetched] = {}
    while True:
        line = _line(imap)
        if line.startswith(done):
            status = line[len(done):].split(b" ", 1)[0].upper()
            if status != b"OK":
                raise IMAPClientError(f"UID FETCH failed: {line.decode('ascii', 'replace').strip()}")
            return found
        if line.startswith(b"+"):
            raise IMAPClientAbortError(f"unexpected continuation during FETCH: {line[:100]!r}")
        if _literal_size(line) is None:
            _untagged(imap, line)
            continue
        text, body = _response_with_literals(imap, line)
        uid = _UID.search(text)
        if uid is not None and body is not None:
            date = _DATE.search(text)
            found[int(uid.group(1))] = (body, _date(date.group(1)) if date else None)


def _response_with_literals(imap: object, line: bytes) -> tuple[bytes, bytes | None]:
    """One response that goes on over literals: its text without them, and the
    literal that followed ``BODY[]``, if one did."""
    parts: list[bytes] = []
    body = None
    while (size := _literal_size(line)) is not None:
        head = line[:line.rindex(b"{")]
        literal = imap.read(size)  # type: ignore[attr-defined]
        if len(literal) != size:
            raise IMAPClientAbortError("connection closed in the middle of a FETCH response")
        parts.append(head)
        if head.rstrip().upper().endswith(BODY):
            body = literal
        line = _line(imap)
    parts.append(line)
    return b"".join(parts), body


def _literal_size(line: bytes) -> int | None:
    """N when the line ends with a literal's announcement ``{N}``."""
    if not line.endswith(b"}\r\n"):
        return None
    start = line.rfind(b"{")
    digits = line[start + 1:-3]
    return int(digits) if start >= 0 and digits.isdigit() else None


def _untagged(imap: object, line: bytes) -> None:
    """A response without literal inside our FETCH: keep what the poller reads later."""
    if line.startswith(b"* BYE"):
        raise IMAPClientAbortError(f"server said goodbye: {line.decode('ascii', 'replace').strip()}")
    m = _UNTAGGED.match(line)
    if m is not None and m.group(2).upper() in (b"EXISTS", b"RECENT"):
        kind = m.group(2).upper().decode()
        imap.untagged_responses.setdefault(kind, []).append(m.group(1))  # type: ignore[attr-defined]


def _line(imap: object) -> bytes:
    line: bytes = imap.readline()  # type: ignore[attr-defined]
    if not line:
        raise IMAPClientAbortError("connection closed in the middle of a FETCH response")
    return line


def _date(value: bytes) -> datetime | None:
    """As imapclient reads an INTERNALDATE with `normalise_times` off (the poller's
    setting); None when it cannot be read (ingest then uses the time of reception)."""
    try:
        return parse_to_datetime(value, normalise=False)
    except (ValueError, OverflowError):
        return None
