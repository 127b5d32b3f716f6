"""Agents work by email: notified, they reply; commands; who may do what."""

from __future__ import annotations

import email
import smtplib
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from sqlmodel import col, select

from mailbot import db
from mailbot.app import App
from mailbot.cases.deliveries import dispatch
from mailbot.models import Case, Event, Message
from tests.mails import mail
from tests.test_smtp import listening

QUOTED = ("\n\nCordialement,\nPaul Agent\n-- \nPaul Agent | Service réclamations Kalra-plus | 01 23 45 67 89\n\n"
          "Le lun. 23 nov. 2026 à 10:02, Kalra-plus <support@kalra-plus.com> a écrit :\n"
          "> Nouveau message du client\n> Bonjour, mon virement de 1 250,00 € n'est pas arrivé.\n")
FINAL_OK = ("#final\nExplication : un contrôle anti-fraude a retenu le virement.\n"
            "Mesures correctives : le seuil du contrôle a été revu.\n"
            "Solution : le virement a été exécuté le 24 novembre.\n")


class Desk:
    """One SMTP listener, a maildir transport, and helpers to play customer and agent."""

    def __init__(self, app: App, port: int) -> None:
        self.app, self.port = app, port
        self.seen: set[str] = set()

    def send(self, raw: bytes, rcpt: str, sender: str = "x@example.org") -> None:
        with smtplib.SMTP("127.0.0.1", self.port) as c:
            c.sendmail(sender, [rcpt], raw)

    def new_mail(self) -> list[EmailMessage]:
        """Mails sent since the last call (dispatching the outbox first)."""
        dispatch(self.app)
        out = []
        new = Path(self.app.config.resolve_path(self.app.config.outbound.path)) / "new"
        for p in sorted(new.iterdir()) if new.is_dir() else []:
            if p.name not in self.seen:
                self.seen.add(p.name)
                out.append(email.message_from_bytes(p.read_bytes(), policy=default))  # type: ignore[arg-type]
        return out

    def case(self) -> Case:
        with db.session_scope(self.app.engine) as s:
            return s.exec(select(Case).order_by(col(Case.id))).first()  # type: ignore[return-value]

    def events(self, type_: str) -> list[Event]:
        with db.session_scope(self.app.engine) as s:
            return list(s.exec(select(Event).where(Event.type == type_)).all())


def to(msgs: list[EmailMessage], addr: str) -> list[EmailMessage]:
    return [m for m in msgs if m["To"].addresses[0].addr_spec == addr]


def text_of(m: EmailMessage) -> str:
    return m.get_body(("plain",)).get_content()  # type: ignore[union-attr]


@pytest.fixture
def desk(app: App) -> Desk:
    with listening(app) as port:
        yield Desk(app, port)


def customer_writes(desk: Desk) -> EmailMessage:
    desk.send(mail(message_id="<cust-1@example.org>"), "support@kalra-plus.com", "marie.dupont@example.org")
    (notif,) = to(desk.new_mail(), "agent@kalra-plus.com")
    return notif


def agent_reply(notif: EmailMessage, body: str, frm: str = "Paul Agent <agent@kalra-plus.com>",
                **headers: str) -> tuple[bytes, str]:
    reply_to = notif["Reply-To"].addresses[0].addr_spec
    raw = mail(frm=frm, to=reply_to, subject=f"Re: {notif['Subject']}", body=body,
               In_Reply_To=notif["Message-ID"], **headers)
    return raw, reply_to


def test_agent_is_notified_with_a_signed_reply_address(desk: Desk) -> None:
    notif = customer_writes(desk)
    case = desk.case()
    assert notif["From"].addresses[0].addr_spec == "support@kalra-plus.com"
    assert notif["Subject"].startswith(f"[{case.ref}]")
    reply_to = notif["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith(f"support+a{case.id}-") and case.reply_token not in reply_to
    body = text_of(notif)
    assert "1 250,00" in body or "1250" in body  # the customer's text / extracted facts
    assert "#final" in body and "#extend" in body  # the list of commands


def test_agent_reply_reaches_the_customer_without_quotes_or_signature(desk: Desk) -> None:
    notif = customer_writes(desk)
    raw, reply_to = agent_reply(notif, "Bonjour Madame,\nNous avons relancé la banque émettrice." + QUOTED)
    desk.send(raw, reply_to, "agent@kalra-plus.com")
    (out,) = to(desk.new_mail(), "marie.dupont@example.org")
    body = text_of(out)
    assert "Nous avons relancé la banque émettrice." in body
    assert "a écrit" not in body and "01 23 45 67 89" not in body and "> Nouveau" not in body
    assert out["From"].addresses[0].addr_spec == "support@kalra-plus.com"
    assert out["In-Reply-To"] == "<cust-1@example.org>"
    assert out["Auto-Submitted"] is None  # written by a human
    assert desk.case().status == "in_progress"


def test_note_reaches_no_customer(desk: Desk) -> None:
    notif = customer_writes(desk)
    raw, reply_to = agent_reply(notif, "#note\nClient connu, deuxième réclamation." + QUOTED)
    desk.send(raw, reply_to, "agent@kalra-plus.com")
    assert to(desk.new_mail(), "marie.dupont@example.org") == []
    with db.session_scope(desk.app.engine) as s:
        assert s.exec(select(Message).where(Message.kind == "note")).one().body_text.startswith("Client connu")


def test_final_missing_a_section_is_rejected_back_to_the_agent(desk: Desk) -> None:
    notif = customer_writes(desk)
    raw, reply_to = agent_reply(notif, "#final\nSolution : remboursé." + QUOTED)
    desk.send(raw, reply_to, "agent@kalra-plus.com")
    mails = desk.new_mail()
    assert to(mails, "marie.dupont@example.org") == []
    (rejection,) = to(mails, "agent@kalra-plus.com")
    text = text_of(rejection)  # the headings to write, in the case's language (#23 item 9)
    assert "section manquante : « Explication : »" in text and "« Mesures correctives : »" in text
    assert "corrective_measures" not in text
    assert desk.case().status != "answered"


def test_final_with_every_section_is_sent_with_recourse(desk: Desk) -> None:
    notif = customer_writes(desk)
    raw, reply_to = agent_reply(notif, FINAL_OK + QUOTED)
    desk.send(raw, reply_to, "agent@kalra-plus.com")
    (final,) = to(desk.new_mail(), "marie.dupont@example.org")
    body = text_of(final)
    assert "contrôle anti-fraude" in body and "seuil du contrôle" in body and "24 novembre" in body
    assert "réexamen" in body.lower() or "médiat" in body.lower()
    case = desk.case()
    assert case.status == "answered" and case.answered_at is not None


def test_final_at_schedules_the_response(desk: Desk) -> None:
    notif = customer_writes(desk)
    raw, reply_to = agent_reply(notif, FINAL_OK.replace("#final", "#final at 2026-11-27T10:00") + QUOTED)
    desk.send(raw, reply_to, "agent@kalra-plus.com")
    assert to(desk.new_mail(), "marie.dupont@example.org") == []  # not before 27 November, 10:00


def test_extend_sends_the_notice_with_the_reason(desk: Desk) -> None:
    notif = customer_writes(desk)
    before = desk.case().due_at
    raw, reply_to = agent_reply(notif, "#extend 10 enquête auprès de la banque du bénéficiaire" + QUOTED)
    desk.send(raw, reply_to, "agent@kalra-plus.com")
    (notice,) = to(desk.new_mail(), "marie.dupont@example.org")
    assert "enquête auprès de la banque du bénéficiaire" in text_of(notice)
    assert desk.case().due_at > before  # type: ignore[operator]


def test_malformed_command_changes_nothing_and_is_rejected(desk: Desk) -> None:
    notif = customer_writes(desk)
    case = desk.case()
    raw, reply_to = agent_reply(notif, "#tier tres-complexe\nRéponse." + QUOTED)
    desk.send(raw, reply_to, "agent@kalra-plus.com")
    mails = desk.new_mail()
    assert to(mails, "marie.dupont@example.org") == []
    (rej,) = to(mails, "agent@kalra-plus.com")
    assert "tres-complexe" in text_of(rej)
    assert desk.case().tier == case.tier and desk.case().due_at == case.due_at


def test_agent_token_from_a_non_agent_address_is_a_security_event(desk: Desk) -> None:
    notif = customer_writes(desk)
    raw, reply_to = agent_reply(notif, "#close\nDossier clos.", frm="Mallory <mallory@evil.example>")
    desk.send(raw, reply_to, "mallory@evil.example")
    mails = desk.new_mail()
    assert to(mails, "marie.dupont@example.org") == []
    assert len(to(mails, "supervisor@kalra-plus.com")) == 1
    assert desk.case().status != "closed"
    assert desk.events("security")


def test_agent_of_the_other_brand_cannot_act(desk: Desk) -> None:
    notif = customer_writes(desk)
    raw, reply_to = agent_reply(notif, "#close", frm="agent@divikeys.com")
    desk.send(raw, reply_to, "agent@divikeys.com")
    assert desk.case().status != "closed" and desk.events("security")


def test_forged_from_without_authentication_results_when_required(make_app: Callable[..., App]) -> None:
    app = make_app(security={"secret": "s3cret-0123456789", "require_authenticated_agents": True,
                             "trusted_authserv_id": "mx.kalra-plus.com"})
    with listening(app) as port:
        desk = Desk(app, port)
        notif = customer_writes(desk)
        raw, reply_to = agent_reply(notif, "#priority urgent")
        desk.send(raw, reply_to, "agent@kalra-plus.com")
        assert desk.case().priority == "normal" and desk.events("security")
        bad = "mx.kalra-plus.com; dkim=fail header.d=kalra-plus.com; spf=fail smtp.mailfrom=agent@kalra-plus.com"
        raw, _ = agent_reply(notif, "#priority urgent", Authentication_Results=bad)
        desk.send(raw, reply_to, "agent@kalra-plus.com")
        assert desk.case().priority == "normal"
        untrusted = "mx.evil.example; dkim=pass header.d=kalra-plus.com"
        raw, _ = agent_reply(notif, "#priority urgent", Authentication_Results=untrusted)
        desk.send(raw, reply_to, "agent@kalra-plus.com")
        assert desk.case().priority == "normal"
        good = "mx.kalra-plus.com; dkim=pass header.d=kalra-plus.com; spf=pass smtp.mailfrom=agent@kalra-plus.com"
        raw, _ = agent_reply(notif, "#priority urgent", Authentication_Results=good)
        desk.send(raw, reply_to, "agent@kalra-plus.com")
        assert desk.case().priority == "urgent"


def test_customer_writing_close_is_plain_text(desk: Desk) -> None:
    customer_writes(desk)
    desk.send(mail(body="#close\n#priority urgent\nMerci de clore.", In_Reply_To="<cust-1@example.org>"),
              "support@kalra-plus.com", "marie.dupont@example.org")
    case = desk.case()
    assert case.status != "closed" and case.priority == "normal"


def test_token_for_one_case_cannot_act_on_another(desk: Desk) -> None:
    notif = customer_writes(desk)
    desk.send(mail(frm="other@example.org", message_id="<cust-2@example.org>"), "support@kalra-plus.com")
    reply_to = notif["Reply-To"].addresses[0].addr_spec
    local, domain = reply_to.split("@")
    prefix, day, sig = local.split("+")[1].split("-")
    forged = f"support+a{int(prefix[1:]) + 1}-{day}-{sig}@{domain}"  # same signature, other case
    desk.send(mail(frm="agent@kalra-plus.com", to=forged, body="#close"), forged, "agent@kalra-plus.com")
    with db.session_scope(desk.app.engine) as s:
        assert all(c.status != "closed" for c in s.exec(select(Case)).all())
    assert desk.events("security")
