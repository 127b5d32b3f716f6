"""The mails we send are written out directly (mailbot.outgoing.compose.build); the standard
library's EmailMessage (`build_with_email_message`) is the reference: read back by
a standard parser, both give the same mail, header by header and part by part."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parseaddr

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailbot.mail.headers import _clean_header_any, clean_header  # noqa: PLC2701 - the general path
from mailbot.outgoing.compose import Outgoing, build, build_with_email_message

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
_pieces = st.sampled_from(list("abcXYZ019 -_'!#&+/") + list('"(),.:;<>@[\\]=?') + list("éßÉçœ€中文😀") +
                          ["\t", "\n", "\r", "\x00", "\u2028", "\u200f", "  ", "=?"])
_text = st.lists(_pieces, max_size=120).map("".join)
_long_words = st.lists(st.sampled_from(["réclamation", "virement", "KP-2026-000001", "=?utf-8?q?x?=", "x" * 90,
                                        "été", "", "中文"]), max_size=40).map(" ".join)
_body = st.lists(st.sampled_from(list("ab é\n€中") + ["x" * 100, "\r\n", "."]), max_size=400).map("".join)


def _meant(value: str) -> str:
    """A header's text as a reader should see it: a literal encoded-word ("=?") in an
    ASCII word defused (see mailbot.outgoing.compose._text_line)."""
    return " ".join(w.replace("=?", "= ?") if w.isascii() else w for w in value.split(" ")).strip()


def _read(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def _addresses(msg: EmailMessage, name: str) -> list[tuple[str, str]]:
    header = msg[name]
    return [] if header is None else [(a.display_name, a.addr_spec) for a in header.addresses]


def _as_rfc2047_reads(raw: bytes, name: str) -> tuple[str, str] | None:
    """The one (display name, address) of a header as RFC 2047 (section 6.2) reads it: the
    space between two adjacent encoded-words is not text. Python 3.11's address parser
    keeps it (CPython gh-128110, fixed in later versions), so where a long display name
    is cut into several encoded-words it reads a space the sender did not write."""
    value = email.message_from_bytes(raw, policy=email.policy.compat32)[name]
    if value is None:
        return None
    value = re.sub(r"\r?\n(?=[ \t])", "", value)
    display, addr = parseaddr(value)
    if not value.lstrip().startswith('"'):  # a quoted string holds no encoded-word
        display = str(make_header(decode_header(display)))
    return display, addr


def _parts(msg: EmailMessage) -> list[tuple[str, str, str]]:
    return [(p.get_content_type(), str(p["Content-Transfer-Encoding"]), p.get_content())
            for p in msg.walk() if not p.is_multipart()]


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(subject=st.one_of(_text, _long_words), from_name=_text, to_name=_text, text=_body,
       html=st.one_of(st.none(), _body.map(lambda b: f"<p>{b}</p>")),
       refs=st.lists(st.sampled_from(["<a@example.org>", "<réf@example.org>", "<" + "x" * 80 + "@example.org>"]),
                     max_size=25))
@example(subject="[KP-2026-000001] Votre réclamation a bien été reçue", from_name="Kalra Plus",
         to_name="Marie Dupont", text="Bonjour Marie,\n", html="<p>Bonjour</p>", refs=["<a@example.org>"])
@example(subject="x", from_name="aaaaaaaaaaaaaaaaaaaaaaééé€€€€\té", to_name="", text="", html=None, refs=[])
def test_the_direct_build_reads_back_as_the_email_message_build(subject: str, from_name: str, to_name: str,
                                                                text: str, html: str | None, refs: list[str]) -> None:
    out = Outgoing(from_addr="support@kalra-plus.com", from_name=from_name, to_addr="marie.dupont@example.org",
                   to_name=to_name, subject=subject, text=text, html=html, message_id="<mb.1.ab@kalra-plus.com>",
                   in_reply_to=refs[-1] if refs else None, references=refs,
                   reply_to="support+tok@kalra-plus.com")
    raw = build(out, AT)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only
    new, ref = _read(raw), _read(build_with_email_message(out, AT))
    for name in ("From", "To", "Reply-To"):
        assert [a for _, a in _addresses(new, name)] == [a for _, a in _addresses(ref, name)]
    names_meant = {"From": from_name, "To": to_name, "Reply-To": from_name}
    for name, display in names_meant.items():
        assert _as_rfc2047_reads(raw, name) == (clean_header(display), str(new[name].addresses[0].addr_spec))
    names = ("Date", "Message-ID", "Auto-Submitted", "X-Auto-Response-Suppress", "X-Mailbot-Loop", "MIME-Version")
    assert [str(new[n]) for n in names] == [str(ref[n]) for n in names]
    # Free text is compared with what was meant: the reference itself drops the space
    # between some ASCII words and encoded-words it folds next to them (Python 3.11).
    assert str(new["Subject"]) == _meant(clean_header(subject)[:900])
    assert str(new["References"] or "") == _meant(" ".join(clean_header(r) for r in refs[-20:]))
    assert str(new["In-Reply-To"] or "") == _meant(clean_header(refs[-1]) if refs else "")
    assert _parts(new) == _parts(ref)
    assert new.get_content_type() == ref.get_content_type() and not new.defects


def test_a_non_ascii_local_part_makes_an_internationalised_mail() -> None:
    """RFC 6532: the address as written, in UTF-8 headers (the relay must offer SMTPUTF8);
    the standard library's SMTP policy wrote encoded-words inside the address instead."""
    out = Outgoing(from_addr="support@kalra-plus.com", to_addr="jörg@exämple.de", subject="Réclamation",
                   text="Bonjour\n", html=None, message_id="<mb.2@kalra-plus.com>", to_name="Jörg")
    raw = build(out, AT)
    assert raw == build_with_email_message(out, AT, utf8=True)
    msg = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "jörg@exämple.de" and msg["To"].addresses[0].display_name == "Jörg"
    assert msg["Subject"] == "Réclamation"


def test_a_non_ascii_domain_alone_is_written_in_idna() -> None:
    out = Outgoing(from_addr="support@kalra-plus.com", to_addr="jorg@exämple.de", subject="Réclamation",
                   text="Bonjour\n", html=None, message_id="<mb.3@kalra-plus.com>")
    raw = build(out, AT)
    assert raw.isascii() and _read(raw)["To"].addresses[0].addr_spec == "jorg@xn--exmple-cua.de"


@given(st.one_of(_text, st.text(max_size=60), st.text(st.characters(max_codepoint=127), max_size=60)))
def test_clean_header_fast_path_gives_what_the_loop_gives(value: str) -> None:
    assert clean_header(value) == _clean_header_any(value)
