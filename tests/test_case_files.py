"""Attachments both ways (issue #23 item 4): notifications list and attach the customer's
files; an agent's files reach the customer, within the same limits."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

from mailbot.app import App
from tests.conftest import SHIPPED
from tests.desk import AGENT, CUSTOMER, Desk, only, reply_to, text_of, to
from tests.mails import mail

PDF = b"%PDF-1.4 releve de novembre " + bytes(range(256))
BIG = b"\x89PNG" + b"x" * 5000


def files_of(m: EmailMessage) -> dict[str, bytes]:
    return {p.get_filename() or "": p.get_content() for p in m.iter_attachments()}  # type: ignore[misc]


def desk_with_limit(make_app: Callable[..., App], limit: int) -> Desk:
    return Desk(make_app(brands=[{**SHIPPED["brands"][0], "staff_attachments_max": limit}, SHIPPED["brands"][1]]))


def test_a_notification_lists_every_file_and_attaches_those_that_fit(make_app: Callable[..., App]) -> None:
    desk = desk_with_limit(make_app, 1000)
    notif = desk.complaint(attachments=(("relevé.pdf", "application/pdf", PDF), ("capture.png", "image/png", BIG),
                                        ("outil.exe", "application/octet-stream", b"MZ...")))
    text = text_of(notif)
    assert "Pièces jointes du client (3)" in text
    assert "1. relevé.pdf (application/pdf, 284 o) : jointe à ce message" in text
    assert f"2. capture.png (image/png, 5 Ko) : trop volumineuse pour être jointe, « mailbot cases attachment " \
           f"{desk.case().ref} 2 --out FICHIER »" in text
    assert "3. outil.exe (application/octet-stream, 5 o) : refusée (blocked file type .exe)" in text
    assert files_of(notif) == {"relevé.pdf": PDF}
    assert files_of(only(to(desk.inbox, CUSTOMER))) == {}  # the acknowledgement sends nothing back


def test_an_agents_file_reaches_the_customer(app: App) -> None:
    desk = Desk(app)
    notif = desk.complaint()
    rcpt = reply_to(notif)
    desk.receive(mail(frm=AGENT, to=rcpt, subject=f"Re: {notif['Subject']}", In_Reply_To=notif["Message-ID"],
                      body="Bonjour Madame,\nvoici le formulaire de contestation à nous renvoyer.\nCordialement",
                      attachments=(("formulaire.pdf", "application/pdf", PDF),)), rcpt)
    reply = only(to(desk.new_mail(), CUSTOMER))
    assert files_of(reply) == {"formulaire.pdf": PDF}
    assert "formulaire de contestation" in text_of(reply)


def test_an_agents_blocked_file_is_refused_with_a_rejection_and_nothing_sent(app: App) -> None:
    desk = Desk(app)
    notif = desk.complaint()
    rcpt = reply_to(notif)
    desk.receive(mail(frm=AGENT, to=rcpt, subject="Re: x", body="Voici l'outil.",
                      attachments=(("outil.exe", "application/octet-stream", b"MZ..."),)), rcpt)
    mails = desk.new_mail()
    assert to(mails, CUSTOMER) == []
    assert "outil.exe: blocked file type .exe" in text_of(only(to(mails, AGENT)))
