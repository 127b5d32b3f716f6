"""Logs: one JSON object per line (journald, files, pipes) or plain lines for a person at
a terminal. Never a message body; IBANs and card numbers are masked in every message.

Lines that say what happened carry an `event` field (`mail.case_opened`,
`outbox.sent`, `daemon.ready`…; docs/operations.md lists them): grep or `jq` on it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from mailbot.db import without_values
from mailbot.mail.masking import mask_sensitive

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
FORMATS = ("json", "text")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", "event"?, …fields}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_sensitive(without_values(record.getMessage()))[:2000],
        }
        out.update(_extras(record))
        if record.exc_info:  # whole: the first frames say where it started (masked like the message)
            out["exc"] = _traceback(self, record)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`2026-12-06 06:55:01 INFO    case opened KP-2026-000001  [mail.case_opened source=smtp …]`
    (local time; the event and the fields in brackets)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        extras = _extras(record)
        tail = [str(extras.pop("event"))] if "event" in extras else []
        tail += [f"{k}={_short(v)}" for k, v in extras.items() if v not in (None, [], "")]
        line = f"{ts} {record.levelname:<7} {mask_sensitive(without_values(record.getMessage()))[:2000]}"
        line += f"  [{' '.join(tail)}]" if tail else ""
        if record.exc_info:
            line += "\n" + _traceback(self, record)
        return line


def _traceback(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The whole traceback (its first frames say where it started), masked like the message,
    without the values a database error carries (`db.without_values`)."""
    assert record.exc_info
    return mask_sensitive(without_values(formatter.formatException(record.exc_info)))


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return mask_sensitive(str(value))[:200]


def default_format(stream: TextIO | None = None) -> str:
    """JSON under systemd (journald sets JOURNAL_STREAM, systemd INVOCATION_ID) and
    whenever stderr is not a terminal (a file, a pipe, a log collector); text for a
    person at a terminal."""
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        return "json"
    stream = stream or sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (ValueError, AttributeError):  # closed or replaced by something that is no file
        return "json"


def setup_logging(verbose: bool = False, fmt: str | None = None) -> None:
    """Log to stderr in `fmt` ("json" or "text"; default: `default_format()`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if (fmt or default_format()) == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("mailparser", "mail-parser", "apscheduler", "alembic", "mail_parser", "weasyprint",
                  "fontTools"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # aiosmtpd logs every peer, envelope address and command at INFO: personal data.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
