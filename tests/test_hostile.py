"""Hostile input: every mail is recorded or quarantined, within bounded time and memory,
and nothing crashes; plus property tests of the pure pieces the ingest path relies on.

The big inputs (100 MB body, 10,000 parts, a 1 MB header line, message/rfc822 nested
100 deep) run in a subprocess each, so that its peak RSS (getrusage) is theirs alone.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import func, select

from mailbot import db
from mailbot.app import App
from mailbot.config import Config
from mailbot.ingest.pipeline import Outcome, ingest
from mailbot.mail.classify import classify
from mailbot.mail.headers import clean_header
from mailbot.mail.masking import mask_sensitive
from mailbot.mail.parsing import Unparseable, parse
from mailbot.mail.routing import route_brands
from mailbot.models import Attachment, Case, Inbound, Message, Outbox
from mailbot.outgoing.compose import Outgoing, build
from tests.conftest import ROOT, make_config
from tests.mails import mail

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

MAX_SECONDS = 60
MAX_RSS_BYTES = 1 << 30  # 1 GiB

_HEAD = (b"From: Marie Dupont <marie.dupont@example.org>\r\nTo: support@kalra-plus.com\r\n"
         b"Subject: %s\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\nMessage-ID: <%s@example.org>\r\n"
         b"MIME-Version: 1.0\r\n")


def _head(tag: str) -> bytes:
    return _HEAD % (tag.encode(), tag.encode())


# --------------------------------------------------------------------------- big inputs


def big_body(size: int = 100 * 1024 * 1024) -> bytes:
    line = b"Bonjour, mon virement de 1 250,00 EUR du 3 novembre n'est jamais arrive.\r\n"
    return (_head("big-body") + b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
            + line * (size // len(line)))


def many_parts(count: int = 10_000) -> bytes:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(count))
    return (_head("many-parts") + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + parts + b"--b--\r\n")


def long_header_line(size: int = 1024 * 1024) -> bytes:
    return _head("long-header") + b"X-Long: " + b"a" * size + b"\r\n\r\nVirement non recu.\r\n"


def long_subject_line(size: int = 1024 * 1024) -> bytes:
    return (b"From: marie@example.org\r\nTo: support@kalra-plus.com\r\nMessage-ID: <long-subject@x>\r\n"
            b"Subject: " + b"virement " * (size // 9) + b"\r\n\r\nVirement non recu.\r\n")


def nested_rfc822(depth: int = 100) -> bytes:
    inner = b"From: x@example.org\r\nSubject: innermost\r\n\r\nVirement non recu.\r\n"
    for i in range(depth):
        inner = (b"From: x@example.org\r\nSubject: level %d\r\nMIME-Version: 1.0\r\n"
                 b"Content-Type: message/rfc822\r\n\r\n" % i) + inner
    return _head("nested") + b"Content-Type: message/rfc822\r\n\r\n" + inner


def nested_multipart(depth: int = 100) -> bytes:
    body = b"Content-Type: text/plain\r\n\r\nVirement non recu.\r\n"
    for i in range(depth):
        b = b"b%d" % i
        body = (b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n"
                + body + b"--" + b + b"--\r\n")
    return _head("nested-multipart") + body


BIG = {
    "big_body": big_body,
    "many_parts": many_parts,
    "long_header_line": long_header_line,
    "long_subject_line": long_subject_line,
    "nested_rfc822": nested_rfc822,
    "nested_multipart": nested_multipart,
}

_WORKER = """
import json, resource, sys, time, logging
from pathlib import Path
sys.path.insert(0, {root!r})
logging.disable(logging.CRITICAL)
from tests.conftest import make_config
from tests.test_hostile import BIG
from mailbot.app import App
from mailbot.ingest.pipeline import ingest
tmp = Path({tmp!r})
app = App.open(make_config(tmp), upgrade=True)
raw = BIG[{name!r}]()
t0 = time.monotonic()
r = ingest(app, raw, "hostile", mailbox_brand="kalra-plus")
elapsed = time.monotonic() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
from mailbot import db
from mailbot.models import Blob
with db.session_scope(app.engine) as s:
    stored = s.get(Blob, r.sha256).size
print(json.dumps({{"stored": stored, "outcome": r.outcome.value, "reason": r.reason[:300], "inbound": r.inbound_id,
                  "elapsed": elapsed, "peak": peak, "size": len(raw)}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BIG))
def test_big_input_is_recorded_in_bounded_time_and_memory(name: str, tmp_path: Path) -> None:
    code = _WORKER.format(root=str(ROOT), tmp=str(tmp_path), name=name)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=3 * MAX_SECONDS, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{name}: {res['size']} bytes -> {res['outcome']} in {res['elapsed']:.1f}s "
          f"(process {time.monotonic() - started:.1f}s), peak RSS {res['peak'] / 2**20:.0f} MiB")
    assert res["outcome"] in {o.value for o in Outcome} - {"duplicate"}
    assert res["inbound"] is not None
    assert res["stored"] == res["size"]  # the raw mail is kept whole
    assert res["elapsed"] < MAX_SECONDS
    assert res["peak"] < MAX_RSS_BYTES
    if res["outcome"] == "quarantined":
        assert res["reason"]


# --------------------------------------------------------------------------- odd mails


def _inbound(app: App, inbound_id: int | None) -> Inbound:
    with db.session_scope(app.engine) as s:
        row = s.get(Inbound, inbound_id)
        assert row is not None
        s.expunge(row)
        return row


@sqlite_only
@pytest.mark.parametrize("charset", ["x-unknown", "utf-7", "unicode-1-1-utf-7", "", "utf-8\x00",
                                     "../../etc", "a" * 300])
def test_invalid_charsets_are_recorded(app: App, charset: str) -> None:
    body = b"+AGEAYgBj- +ZeVnLIqe- +/v8- +AAA- +2D3cAA- garbage \xff\xfe\x80 +\x00-"
    raw = (_head(f"charset-{len(charset)}") + b'Content-Type: text/plain; charset="'
           + charset.encode("latin-1") + b'"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n' + body)
    r = ingest(app, raw, "hostile", mailbox_brand="kalra-plus")
    assert r.outcome is Outcome.CASE_OPENED, r.reason
    enc = (b"From: =?x-unknown?q?Marie=E9?= <marie@example.org>\r\nTo: support@kalra-plus.com\r\n"
           b"Subject: =?utf-7?q?+ZeVnLIqe-?= =?utf-8?b?//79?= =?bogus?x?abc?=\r\n"
           b"Message-ID: <enc-" + str(len(charset)).encode() + b"@x>\r\n\r\nVirement non recu.\r\n")
    r = ingest(app, enc, "hostile", mailbox_brand="kalra-plus")
    assert r.outcome is Outcome.CASE_OPENED, r.reason


def test_nul_bytes_are_recorded_not_lost(app: App) -> None:
    """PostgreSQL refuses NUL in text columns: the mail must still become a case."""
    raw = (b"From: Ma\x00rie <marie.dupont@example.org>\r\nTo: support@kalra-plus.com\r\n"
           b"Subject: Vire\x00ment =?utf-8?q?non=00re=C3=A7u?=\r\nMessage-ID: <nul\x00@example.org>\r\n"
           b"In-Reply-To: <a\x00b@x>\r\nX-Thing: \x00\x00\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nMon vire\x00ment de 100 EUR.\r\n"
           b'--b\r\nContent-Type: application/pdf; name="a\x00b.pdf"\r\n'
           b'Content-Disposition: attachment; filename="re\x00leve.pdf"\r\n\r\n%PDF\x00\r\n--b--\r\n')
    r = ingest(app, raw, "hostile", envelope_from="ma\x00rie@example.org",
               envelope_to=["support@kalra-plus.com"])
    assert r.outcome is Outcome.CASE_OPENED, r.reason
    with db.session_scope(app.engine) as s:
        msg = s.exec(select(Message).where(Message.inbound_id == r.inbound_id)).one()
        case = s.get(Case, msg.case_id)
        assert case is not None
        stored = [msg.subject, msg.from_name, msg.from_addr, msg.body_text, msg.message_id or "",
                  case.subject, case.customer_name]
        stored += [a.filename for a in s.exec(select(Attachment).where(Attachment.message_id == msg.id))]
        assert all("\x00" not in v for v in stored), stored
        assert "ment de 100 EUR" in msg.body_text
    # and it is idempotent like any other mail
    again = ingest(app, raw, "hostile", envelope_to=["support@kalra-plus.com"])
    assert again.outcome is Outcome.DUPLICATE


@sqlite_only
def test_hostile_attachment_names(app: App) -> None:
    names = ["../../../etc/passwd", "..\\..\\boot.ini", "CON", "a\x00b.exe", "x" * 500 + ".pdf",
             "\u202eexe.pdf", "\u202efdp.exe", "....", "", " ", "/", "a/b/../../c.txt",
             "=?utf-8?q?..=2F..=2Fetc=2Fshadow?="]
    atts = []
    for n in names:
        atts.append(b'--b\r\nContent-Type: application/octet-stream\r\n'
                    b'Content-Disposition: attachment; filename="' + n.encode("utf-8") + b'"\r\n'
                    b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(n.encode() + b"!")
                    + b"\r\n")
    raw = (_head("names") + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nVoir pieces jointes.\r\n" + b"".join(atts) + b"--b--\r\n")
    r = ingest(app, raw, "hostile", mailbox_brand="kalra-plus")
    assert r.outcome is Outcome.CASE_OPENED, r.reason
    with db.session_scope(app.engine) as s:
        msg = s.exec(select(Message).where(Message.inbound_id == r.inbound_id)).one()
        stored = [a.filename for a in s.exec(select(Attachment).where(Attachment.message_id == msg.id))]
    assert len(stored) >= len(names) - 4  # empty names may not count as attachments
    for name in stored:
        assert name and len(name) <= 255, name
        assert "/" not in name and "\\" not in name and "\x00" not in name, name
        assert not name.startswith("."), name
        assert "\u202e" not in name and "\u202d" not in name, name
        assert all(ord(c) >= 32 for c in name), name


@sqlite_only
@pytest.mark.parametrize("smuggled", [
    "Evil <attacker@evil.example>\r\nBcc: victim@example.com",
    "attacker@evil.example",
    "<attacker@evil.example>",
    "x\r\n\r\nattacker@evil.example",
])
def test_encoded_word_from_cannot_smuggle_an_address(app: App, smuggled: str) -> None:
    word = "=?utf-8?b?" + base64.b64encode(smuggled.encode()).decode() + "?="
    raw = (f"From: {word} <real.sender@example.org>\r\nTo: support@kalra-plus.com\r\n"
           f"Subject: {word}\r\nMessage-ID: <smuggle-{abs(hash(smuggled))}@x>\r\n\r\n"
           "Virement non recu.\r\n").encode()
    parsed = parse(raw)
    assert parsed.from_addr == "real.sender@example.org"
    assert "\r" not in parsed.from_name and "\n" not in parsed.from_name
    assert "\r" not in parsed.subject and "\n" not in parsed.subject
    r = ingest(app, raw, "hostile", mailbox_brand="kalra-plus")
    assert r.outcome is Outcome.CASE_OPENED, r.reason
    with db.session_scope(app.engine) as s:
        case = s.exec(select(Case).where(Case.ref == r.case_refs[0])).one()
        assert case.customer_email == "real.sender@example.org"
        rows = s.exec(select(Outbox).where(Outbox.case_id == case.id)).all()
        assert "real.sender@example.org" in {row.to_addr for row in rows}  # the acknowledgement
        for row in rows:
            assert "evil.example" not in row.to_addr and "victim" not in row.to_addr
            if row.raw is not None:  # else built at dispatch time
                msg = email.message_from_bytes(row.raw, policy=email.policy.default)
                assert msg["Bcc"] is None


def test_sender_spoofing_our_own_address_opens_nothing(app: App) -> None:
    raw = mail(frm="Support <support@kalra-plus.com>", subject="Votre dossier")
    r = ingest(app, raw, "hostile", envelope_to=["support@kalra-plus.com"])
    assert r.outcome is Outcome.OWN, r.reason
    with db.session_scope(app.engine) as s:
        assert s.exec(select(func.count()).select_from(Case)).one() == 0
        assert s.exec(select(func.count()).select_from(Outbox)).one() == 0


@sqlite_only
def test_mail_loop_storm_gets_no_acknowledgement(app: App) -> None:
    """An auto-responder answering 50 times (each answer a new mail) never gets a reply."""
    for i in range(50):
        raw = mail(frm="Robot <robot@example.org>", subject="Réponse automatique : absent",
                   body="Je suis absent jusqu'au 30 novembre.", message_id=f"<loop-{i}@example.org>",
                   Auto_Submitted="auto-replied", X_Autoreply="yes")
        r = ingest(app, raw, "hostile", envelope_to=["support@kalra-plus.com"], envelope_from="")
        assert r.outcome is Outcome.AUTOMATIC, r.reason
    # the same storm answering a real case: attached to it, still never answered
    first = ingest(app, mail(frm="marie@example.org"), "hostile", envelope_to=["support@kalra-plus.com"])
    assert first.outcome is Outcome.CASE_OPENED
    with db.session_scope(app.engine) as s:
        case = s.exec(select(Case).where(Case.ref == first.case_refs[0])).one()
        ack = s.exec(select(Outbox).where(Outbox.case_id == case.id)).all()
        acks_before = len(ack)
        token, ack_id = case.reply_token, ack[0].message_id
    for i in range(50):
        raw = mail(frm="marie@example.org", subject="Automatic reply: out of office",
                   body="I am away.", message_id=f"<loop-case-{i}@example.org>",
                   In_Reply_To=ack_id, Auto_Submitted="auto-replied")
        r = ingest(app, raw, "hostile", envelope_to=[f"support+{token}@kalra-plus.com"])
        assert r.outcome is Outcome.AUTOMATIC, r.reason
    with db.session_scope(app.engine) as s:
        assert s.exec(select(func.count()).select_from(Outbox)).one() == acks_before
        assert s.exec(select(func.count()).select_from(Case)).one() == 1


# --------------------------------------------------------------------------- properties

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_header_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=80)
_mailish = st.one_of(
    st.binary(max_size=2000),
    st.builds(
        lambda hs, body: b"".join(hs) + b"\r\n" + body,
        st.lists(st.builds(lambda n, v: n + b": " + v + b"\r\n",
                           st.sampled_from([b"From", b"To", b"Subject", b"Content-Type", b"Date",
                                            b"Message-ID", b"Content-Transfer-Encoding", b"X-Y",
                                            b"Return-Path", b"Auto-Submitted", b"References"]),
                           st.binary(max_size=120)), max_size=10),
        st.binary(max_size=500)),
    st.builds(lambda ct, b: b"From: a@b\r\nContent-Type: " + ct + b"\r\n\r\n" + b,
              st.sampled_from([b"multipart/mixed; boundary=x", b"multipart/report; report-type=x",
                               b"message/rfc822", b"message/delivery-status", b'text/plain; charset="\xff"',
                               b"multipart/alternative; boundary=\"\""]),
              st.binary(max_size=800)),
)


@FAST
@given(_mailish)
def test_parse_returns_or_raises_unparseable(raw: bytes) -> None:
    try:
        parsed = parse(raw)
    except Unparseable:
        return
    assert isinstance(parsed.subject, str) and "\n" not in parsed.subject
    assert isinstance(parsed.text, str)


@pytest.mark.slow
@FAST
@given(_mailish, st.one_of(st.none(), st.text(max_size=40)))
def test_classify_never_raises(raw: bytes, envelope_from: str | None) -> None:
    msg = email.message_from_bytes(raw)
    verdict = classify(msg, envelope_from=envelope_from, own_addresses=["support@kalra-plus.com"])
    assert verdict.kind
    try:
        parsed = parse(raw)
    except Unparseable:
        return
    classify(parsed.message, envelope_from=envelope_from, own_addresses=["support@kalra-plus.com"])


@cache
def _config() -> Config:
    return make_config(Path(tempfile.gettempdir()) / "mailbot-hostile-unused")


_recipient = st.one_of(
    st.text(max_size=60),
    st.builds(lambda a, b: f"{a}@{b}", st.text(max_size=20), st.sampled_from(
        ["kalra-plus.com", "KALRA-PLUS.COM", "divikeys.com", "example.org", "", "@", "kalra-plus.com\x00"])),
    st.builds(lambda t: f"support+{t}@kalra-plus.com", st.text(max_size=30)),
)


@FAST
@given(st.lists(_recipient, max_size=5), st.lists(_recipient, max_size=5),
       st.sampled_from([None, "kalra-plus", "divikeys"]))
def test_route_brands_never_raises(envelope_to: list[str], to: list[str], mailbox: str | None) -> None:
    header = ", ".join(to).replace("\r", " ").replace("\n", " ")
    try:
        parsed = parse(f"From: a@example.org\r\nTo: {header}\r\nCc: {header}\r\n\r\nx".encode(
            "utf-8", "surrogateescape"))
    except Unparseable:
        parsed = None
    routes = route_brands(_config(), parsed, envelope_to, mailbox)
    assert isinstance(routes, list)
    if mailbox:
        assert routes


@FAST
@given(st.text(max_size=300))
def test_clean_header_is_one_line(value: str) -> None:
    out = clean_header(value)
    assert "\r" not in out and "\n" not in out
    assert not any(c in out for c in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


_card_or_iban = st.one_of(
    st.text(max_size=200),
    st.text(alphabet="0123456789 -", max_size=60),
    st.builds(lambda p, s: f"{p} FR76 3000 6000 0112 3456 7890 189 {s}", st.text(max_size=30), st.text(max_size=30)),
    st.builds(lambda p, s: f"{p}4970 1012 3456 7890{s}", st.text(max_size=10), st.text(max_size=10)),
    st.builds(lambda p: f"carte {p} 4111111111111111 et FR7630006000011234567890189", st.text(max_size=20)),
)


@FAST
@given(_card_or_iban)
def test_mask_sensitive_is_idempotent(text: str) -> None:
    once = mask_sensitive(text)
    assert mask_sensitive(once) == once


_injection = st.one_of(
    _header_text,
    st.builds(lambda a, b: f"{a}\r\nBcc: victim@example.com\r\n{b}", _header_text, _header_text),
    st.builds(lambda a, sep: f"{a}{sep}Bcc: victim@example.com", _header_text,
              st.sampled_from(["\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\x00"])),
)


@pytest.mark.slow
@FAST
@given(_injection, _injection, _injection)
def test_compose_never_injects_a_header(subject: str, from_name: str, to_name: str) -> None:
    out = Outgoing(from_addr="support@kalra-plus.com", to_addr="marie@example.org", subject=subject,
                   text="Bonjour", html=None, message_id="<mb.1@kalra-plus.com>", from_name=from_name,
                   to_name=to_name)
    raw = build(out, datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc:") for line in head.split(b"\r\n"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Bcc"] is None
    assert [str(a.addr_spec) for a in msg["To"].addresses] == ["marie@example.org"]


def test_compose_subject_with_a_literal_encoded_word() -> None:
    """A customer subject holding an undecodable encoded-word, quoted back in "Re: …"."""
    out = Outgoing(from_addr="support@kalra-plus.com", to_addr="marie@example.org",
                   subject="Re: =?GB2312?B?g8iRqsGmrmHJ+tPr16LL3Lmk0tXM9bz+1q685LXEudjPtaO7?=",
                   text="Bonjour", html=None, message_id="<mb.2@kalra-plus.com>")
    msg = email.message_from_bytes(build(out, datetime(2026, 11, 23, 9, 0, tzinfo=UTC)),
                                   policy=email.policy.default)
    assert str(msg["Subject"]).startswith("Re: ") and "GB2312" in str(msg["Subject"])




# --------------------------------------------------------------------------- parsing fixes


def test_html_to_text_drops_office_namespaced_tags() -> None:
    from mailbot.mail.htmltext import html_to_text

    html = ('<p class=MsoNormal>Bonjour<o:p></o:p></p><p><o:p>&nbsp;</o:p></p>'
            '<v:shape id="x"><v:imagedata src="a.png"/></v:shape><p>Cordialement</p>')
    assert html_to_text(html) == "Bonjour\n\nCordialement"


@pytest.mark.parametrize(("raw", "subject", "name", "addr"), [
    # 8-bit UTF-8 in headers (no encoded-word)
    ("Subject: élégibilité\r\nFrom: Ups Rémi <r@example.com>\r\n".encode(),
     "élégibilité", "Ups Rémi", "r@example.com"),
    # 8-bit GB2312 headers, charset known only from the body
    ("Subject: 转发\r\nFrom: \"武兰成\" <g@example.com>\r\nContent-Type: text/plain; charset=gb2312\r\n"
     .encode("gb2312"), "转发", "武兰成", "g@example.com"),
    # declared GB2312, really GBK; declared ISO-2022-JP, really Shift_JIS
    (b"Subject: =?GB2312?B?g8iRqsGmrmHJ+tPr16LL3Lmk0tXM9bz+1q685LXEudjPtaO7?=\r\n"
     b"From: =?ISO-2022-JP?B?g2OBW4OLIEVYQU1QTEU=?= <bar@example.org>\r\n",
     "內應力產生与注塑工艺条件之间的关系；", "ツール EXAMPLE", "bar@example.org"),
    # an encoded-word holding a comma; a broken From first; "<>, real"
    (b"Subject: x\r\nFrom: =?iso-8859-1?Q?B=FCrling,=20Andreas?= <smith@example.com>\r\n",
     "x", "Bürling, Andreas", "smith@example.com"),
    (b"Subject: x\r\nFrom: [??????]\r\nFrom: =?utf-8?B?6YO955C5?= <g@185.example>\r\n", "x", "都琹",
     "g@185.example"),
    (b'Subject: x\r\nFrom: "Yangzhou " <>, "LTD" <ly@example.com>\r\n', "x", "LTD", "ly@example.com"),
    # no From at all: Reply-To
    (b"Subject: x\r\nReply-To: <vip@126.example>\r\n", "x", "", "vip@126.example"),
    # an MTA forgot to indent a folded Received: the headers after it are not lost
    (b"Received: from a (1.1.1.1) by\r\nb.example.com with SMTP\r\nFrom: k@example.com\r\nSubject: AW\r\n",
     "AW", "", "k@example.com"),
    # folded before an encoded-word: the space the fold stands for stays (it was "monrelevé")
    (b"Subject: Erreur sur mon\r\n =?utf-8?q?relev=C3=A9?=\r\nFrom: =?utf-8?q?R=C3=A9mi?=\r\n\t<r@example.com>\r\n",
     "Erreur sur mon relevé", "Rémi", "r@example.com"),
    (b"Subject: =?utf-8?q?Relev=C3=A9?=\r\n\tfaux\r\nFrom: r@example.com\r\n", "Relevé faux", "", "r@example.com"),
    # a line of text before the headers
    (b"---- Original email message ----\r\nFrom: c@example.cz\r\nSubject: Contact\r\n",
     "Contact", "", "c@example.cz"),
])
def test_parse_reads_real_world_headers(raw: bytes, subject: str, name: str, addr: str) -> None:
    parsed = parse(raw + b"To: support@kalra-plus.com\r\n\r\nBonjour\r\n")
    assert (parsed.subject, parsed.from_name, parsed.from_addr) == (subject, name, addr)


def test_parse_names_inline_and_attached_mail_parts() -> None:
    raw = (_head("names-cid") + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nVoir.\r\n"
           b"--b\r\nContent-Type: image/jpeg\r\nContent-ID: <image001.jpg@01CDB132.D8A510F0>\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n/9j/\r\n"
           b"--b\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
           b"From: a@example.org\r\nSubject: Relance facture\r\n\r\nhello\r\n--b--\r\n")
    names = [a.filename for a in parse(raw).attachments]
    assert names == ["image001.jpg", "Relance facture.eml"]
