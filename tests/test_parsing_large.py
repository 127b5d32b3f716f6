"""Large mails: their large non-text parts are cut at the byte level before parsing
(mailbot.mail.parsing, "Large parts"), and the result is the one the whole mail gives."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from email import policy
from email.message import EmailMessage

import pytest

from mailbot.ingest.analysis import dedupe_key
from mailbot.mail import parsing
from mailbot.mail.classify import classify
from mailbot.mail.parsing import ParsedMail, parse

MB = 1_000_000
TEXT = "Bonjour,\n\nMon virement de 1 250,00 € du 3 mai n'est jamais arrivé. Merci d'avance !\n"
HTML = "<p>Bonjour, le relevé est ci-joint. Réclamation n° 42 — merci.</p>\n"


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _headed(msg: EmailMessage, tag: str) -> EmailMessage:
    msg["From"] = "Élodie Martin <elodie.martin@example.org>"
    msg["To"] = "support@kalra-plus.com"
    msg["Subject"] = f"Réclamation {tag}"
    msg["Message-ID"] = f"<{tag}@example.org>"
    return msg


def simple_mail(pol: policy.Policy = policy.default) -> tuple[bytes, dict[str, bytes]]:
    pdf = blob(int(1.6 * MB), 1)
    msg = _headed(EmailMessage(policy=pol), "simple")
    msg.set_content(TEXT)
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="releve.pdf")
    return msg.as_bytes(), {"releve.pdf": pdf}


def nested_mail() -> tuple[bytes, dict[str, bytes]]:
    """multipart/alternative holding text/plain and a multipart/mixed (html, an inline
    image named by its Content-ID only, a small and a large attachment)."""
    png, small, pdf = blob(int(1.2 * MB), 2), blob(5_000, 3), blob(int(1.1 * MB), 4)
    msg = _headed(EmailMessage(policy=policy.SMTP), "nested")
    msg.set_content(TEXT)
    msg.make_alternative()
    mixed = EmailMessage(policy=policy.SMTP)
    mixed.set_content(HTML, subtype="html")
    mixed.add_attachment(png, maintype="image", subtype="png", disposition="inline", cid="<image001.png@01D9>")
    mixed.add_attachment(small, maintype="application", subtype="octet-stream", filename="petit.bin")
    mixed.add_attachment(pdf, maintype="application", subtype="pdf", filename="contrat.pdf")
    msg.attach(mixed)
    return msg.as_bytes(), {"image001.png": png, "petit.bin": small, "contrat.pdf": pdf}


def qp_mail() -> tuple[bytes, dict[str, bytes]]:
    """A quoted-printable attachment (with a non-ASCII RFC 2231 file name) and a base64 one."""
    data, pdf = blob(700_000, 5), blob(int(1.2 * MB), 6)
    name = "relevé d’identité bancaire.bin"
    msg = _headed(EmailMessage(), "qp")
    msg.set_content(TEXT)
    msg.add_attachment(data, maintype="application", subtype="octet-stream", cte="quoted-printable",
                       filename=name)
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="scan.pdf")
    raw = msg.as_bytes()
    assert b"filename*=utf-8''relev%C3%A9" in raw and b"quoted-printable" in raw
    return raw, {name: data, "scan.pdf": pdf}


def unclosed_mail() -> tuple[bytes, dict[str, bytes]]:
    """Built by hand: preamble, a separator followed by a closing boundary line (skipped as
    a doubled boundary), an 8bit binary attachment holding the boundary in mid-line, a
    base64 one, and no closing boundary."""
    raw8 = b"\r\n".join([bytes(range(32, 256))] * 3_000 + [b"not a boundary: --XYZ"]
                         + [bytes(range(32, 256))] * 3_000)  # 8bit, CRLF lines
    pdf = blob(int(1.1 * MB), 7)
    b64 = base64.encodebytes(pdf).replace(b"\n", b"\r\n")
    raw = (b"From: Elodie <elodie.martin@example.org>\r\nTo: support@kalra-plus.com\r\n"
           b"Subject: =?utf-8?q?R=C3=A9clamation?=\r\nMessage-ID: <unclosed@example.org>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n"
           b"This is a multi-part message.\r\n--XYZ\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           + TEXT.encode().replace(b"\n", b"\r\n") + b"\r\n--XYZ\r\n--XYZ-- \r\n"
           b"Content-Type: application/octet-stream; name=\"octets.bin\"\r\n"
           b"Content-Disposition: attachment; filename=\"octets.bin\"\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + raw8 + b"\r\n--XYZ\r\n"
           b"Content-Type: application/pdf; name=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + b64)
    return raw, {"octets.bin": raw8, "scan.pdf": pdf}


def single_part_mail() -> tuple[bytes, dict[str, bytes]]:
    """No multipart: the whole body is one 8bit attachment (its last newline included)."""
    data = b"\n".join([bytes(range(32, 256))] * 10_000) + b"\n"
    raw = (b"From: elodie.martin@example.org\nTo: support@kalra-plus.com\nSubject: export\n"
           b"Message-ID: <single@example.org>\nMIME-Version: 1.0\n"
           b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: 8bit\n"
           b"Content-Disposition: attachment; filename=\"export.bin\"\n\n" + data)
    return raw, {"export.bin": data}


def summary(parsed: ParsedMail) -> tuple:
    """What ingest reads of a parse: its fields, and the verdict and dedupe key it leads to
    (classification reads the message's parts, which may hold placeholders)."""
    verdict = classify(parsed.message, envelope_from=None, own_addresses=frozenset())
    return (parsed.text, parsed.html, parsed.subject, parsed.from_addr, parsed.from_name,
            [(a.filename, a.content_type, a.data) for a in parsed.attachments],
            (verdict.kind, verdict.reason), dedupe_key("0" * 64, parsed))


def placeholders(parsed: ParsedMail) -> int:
    """Parts of the parsed message that hold a placeholder instead of their body."""
    return sum(1 for part in parsed.message.walk() if not part.is_multipart()
               and (part.get_payload(decode=True) or b"").startswith(b"mailbot-cut-"))


def whole(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> ParsedMail:
    with monkeypatch.context() as m:
        m.setattr(parsing, "CUT_MIN_MAIL_BYTES", 10**12)
        return parse(raw)


@pytest.fixture(params=["mail-parser", "stdlib"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both paths: mail-parser (these mails are small enough) and the stdlib (for
    mails larger than MAILPARSER_MAX_BYTES)."""
    if request.param == "stdlib":
        monkeypatch.setattr(parsing, "MAILPARSER_MAX_BYTES", 0)
    return request.param


@pytest.mark.parametrize(("build", "cuts"), [
    (simple_mail, 1), (lambda: simple_mail(policy.SMTP), 1), (nested_mail, 2), (qp_mail, 2),
    (unclosed_mail, 2), (single_part_mail, 1),
], ids=["simple-lf", "simple-crlf", "nested", "qp-rfc2231", "unclosed-8bit", "single-part"])
def test_cut_gives_the_whole_parse(build, cuts: int, parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, files = build()
    assert len(raw) > parsing.CUT_MIN_MAIL_BYTES
    cut, full = parse(raw), whole(raw, monkeypatch)
    assert placeholders(cut) == cuts and placeholders(full) == 0  # the cut path was taken
    assert cut.parser == full.parser == parser
    assert summary(cut) == summary(full)
    if parser == "stdlib":  # which keeps no unnamed inline part
        files.pop("image001.png", None)
    assert {a.filename: a.data for a in cut.attachments} == files
    assert "arrivé" in cut.text or build is single_part_mail


def _no_header_separator(raw: bytes) -> bytes:
    head, sep, body = raw.partition(b'filename="releve.pdf"\nMIME-Version: 1.0\n')
    assert sep
    return head + sep + b"X-Odd line without a colon\n" + body  # the stdlib ends the headers there


def _base64_one_short(raw: bytes) -> bytes:
    """Missing padding: the stdlib adds it, mail-parser gives up; either way, as today."""
    end = raw.rindex(b"\n--")
    return raw[: end - 2] + raw[end - 1:]


def _base64_with_8bit_byte(raw: bytes) -> bytes:
    """mail-parser reads base64 as text and gives such a body up; the stdlib skips the byte."""
    end = raw.rindex(b"\n--")
    return raw[: end - 200] + "é".encode() + raw[end - 200:]


@pytest.mark.parametrize("damage", [_no_header_separator, _base64_one_short, _base64_with_8bit_byte],
                         ids=["no-header-separator", "base64-one-short", "base64-8bit-byte"])
def test_a_part_the_parsers_would_read_their_own_way_is_not_cut(
        parser: str, monkeypatch: pytest.MonkeyPatch, damage: Callable[[bytes], bytes]) -> None:
    raw = damage(simple_mail()[0])
    cut, full = parse(raw), whole(raw, monkeypatch)
    assert placeholders(cut) == 0
    assert summary(cut) == summary(full)


def test_a_placeholder_inside_an_attached_multipart(parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """mail-parser gives a multipart with a file name as one attachment, its parts as text:
    a placeholder would show there, so that mail is parsed whole; the stdlib path cuts."""
    pdf = blob(int(1.6 * MB), 8)
    raw = (b"From: elodie.martin@example.org\nTo: support@kalra-plus.com\nSubject: dossier\n"
           b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=OUT\n\n--OUT\n"
           b"Content-Type: text/plain; charset=utf-8\n\n" + TEXT.encode() + b"\n--OUT\n"
           b"Content-Type: multipart/mixed; boundary=IN\n"
           b"Content-Disposition: attachment; filename=dossier.zip\n\n--IN\n"
           b"Content-Type: text/plain\n\ndossier\n--IN\n"
           b"Content-Type: application/pdf\nContent-Disposition: attachment; filename=piece.pdf\n"
           b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(pdf) + b"--IN--\n--OUT--\n")
    cut, full = parse(raw), whole(raw, monkeypatch)
    assert placeholders(cut) == (0 if parser == "mail-parser" else 1)
    assert summary(cut) == summary(full)
    assert pdf in [a.data for a in cut.attachments]


def test_a_placeholder_in_the_text_falls_back_to_the_whole_parse(parser: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    raw = simple_mail()[0]
    cte = lambda msg: str(msg.get("content-transfer-encoding", "")).lower()  # noqa: E731
    monkeypatch.setattr(parsing, "_cuttable", cte)  # the text body is cut too
    monkeypatch.setattr(parsing, "CUT_MIN_PART_BYTES", 10)
    cut, full = parse(raw), whole(raw, monkeypatch)
    assert placeholders(cut) == 0
    assert summary(cut) == summary(full)


@pytest.mark.slow
def test_every_non_text_leaf_is_decoded_as_the_stdlib_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no size threshold, the byte-level scan finds every cuttable leaf of the
    stdlib parse tree, in order, and decodes it to the same bytes."""
    monkeypatch.setattr(parsing, "CUT_MIN_PART_BYTES", 0)
    for build in (simple_mail, nested_mail, qp_mail, unclosed_mail, single_part_mail):
        raw = build()[0]
        plan = parsing._plan(raw)
        full = whole(raw, monkeypatch)
        leaves = [p for p in full.message.walk() if not p.is_multipart()
                  and parsing._cuttable(p) is not None]
        assert len(plan.cuts) == len(leaves)
        for c, part in zip(plan.cuts, leaves, strict=True):
            assert c.data == part.get_payload(decode=True)
