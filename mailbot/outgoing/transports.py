"""Transports the dispatcher sends through: a real SMTP relay, or a Maildir (demo/tests)."""

from __future__ import annotations

import email.parser
import hashlib
import os
import smtplib
import socket
import ssl
import time
from email import policy
from pathlib import Path
from typing import Protocol

from mailbot import filemodes
from mailbot.config import Config, OutboundConfig
from mailbot.mail.senders import idna_address, needs_smtputf8


class PermanentError(Exception):
    """The relay refused the mail with a 5xx answer."""


class Transport(Protocol):
    where: str  # for logs and errors: "relay HOST:PORT", "maildir PATH"

    def send(self, from_addr: str, to_addr: str, raw: bytes) -> None: ...
    def close(self) -> None: ...


def _message_id(raw: bytes) -> str | None:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    value = email.parser.BytesHeaderParser(policy=policy.compat32).parsebytes(head).get("Message-ID")
    return (str(value).strip() or None) if value else None


class MaildirTransport:
    """Writes each mail as one file in `path/new` (tmp + rename, as Maildir wants).

    The file is named after the mail's Message-ID and recipient, so the same
    outbox row sent twice (a crash between this write and the commit that marks
    the row sent) replaces the first copy instead of adding a second one: the
    recipient gets it once. Mail without a Message-ID gets a unique name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = f"maildir {path}"
        for sub in ("tmp", "new", "cur"):
            filemodes.private_dir(path / sub)  # 0700: customers' mail (mailbot.filemodes)
        self._n = 0
        self._cur: set[str] | None = None

    def send(self, from_addr: str, to_addr: str, raw: bytes) -> None:
        self._n += 1
        unique = f"{time.time_ns()}.P{os.getpid()}Q{self._n}.{socket.gethostname()}"
        mid = _message_id(raw)
        if mid is None:
            name = unique
        else:
            key = hashlib.sha256(f"{mid}\0{to_addr.lower()}".encode()).hexdigest()[:40]
            name = f"mailbot-{key}.{socket.gethostname()}"
            if name in self._read():
                return  # delivered before, and already read by the mailbox owner
        tmp = self.path / "tmp" / unique
        envelope = f"X-Mailbot-Envelope-From: {from_addr}\r\nX-Mailbot-Envelope-To: {to_addr}\r\n".encode()
        with os.fdopen(filemodes.open_private(tmp), "wb") as fh:
            fh.write(envelope + raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / "new" / name)  # atomic; replaces an earlier copy

    def _read(self) -> set[str]:
        """The mails in `cur` (read by the mailbox owner), by name without their flags:
        listed once per transport, i.e. per dispatch run (a re-send comes in a later run)."""
        if self._cur is None:
            self._cur = {n.partition(":")[0] for n in os.listdir(self.path / "cur")}
        return self._cur

    def close(self) -> None:
        pass


class SmtpTransport:
    """One connection per dispatch run, reused for every row; 5xx → PermanentError."""

    def __init__(self, cfg: OutboundConfig) -> None:
        self.cfg = cfg
        self.where = f"relay {cfg.host}:{cfg.port}"
        self._conn: smtplib.SMTP | None = None

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.cfg.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _connect(self) -> smtplib.SMTP:
        cfg = self.cfg
        if cfg.tls:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=self._context())
        else:
            conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            if cfg.starttls:
                conn.starttls(context=self._context())
        password = cfg.password()
        if cfg.username and password is not None:
            conn.login(cfg.username, password)
        return conn

    def send(self, from_addr: str, to_addr: str, raw: bytes) -> None:
        if self._conn is None:
            self._conn = self._connect()
        options: list[str] = []
        if not needs_smtputf8(from_addr, to_addr):
            from_addr, to_addr = idna_address(from_addr), idna_address(to_addr)
        else:  # RFC 6531: only through a relay that offers it
            self._conn.ehlo_or_helo_if_needed()
            if not self._conn.has_extn("smtputf8"):
                raise PermanentError(f"{self.where} does not offer SMTPUTF8, which the address {to_addr} "
                                     "needs: not sent (the customer must be reached another way)")
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        try:
            self._conn.sendmail(from_addr, [to_addr], raw, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise (PermanentError if code >= 500 else RuntimeError)(_answer(code, text)) from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                raise PermanentError(_answer(exc.smtp_code, exc.smtp_error)) from exc
            raise
        except (smtplib.SMTPServerDisconnected, OSError):
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except Exception:
                pass
            self._conn = None


def _answer(code: int, text: bytes | str) -> str:
    """The relay's answer as an admin reads it: "550 5.1.1 <a@b>: User unknown"."""
    return f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"


def make_transport(config: Config) -> Transport:
    out = config.outbound
    if out.transport == "smtp":
        return SmtpTransport(out)
    return MaildirTransport(config.resolve_path(out.path))
