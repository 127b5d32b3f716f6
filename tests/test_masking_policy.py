"""One masking policy for subjects, names and bodies (issue #27 item 1, issue #23 item 4):
a card number is never whole in any mail, page or CLI output, nor stored whole; an IBAN
is whole only for the brand's own staff, masked to the customer, in logs and exports."""

from __future__ import annotations

import logging

import pytest

from mailbot.app import App
from mailbot.mail.masking import for_customer, mask_sensitive, stored_body
from mailbot.ops.logs import JsonFormatter
from tests.desk import AGENT, CUSTOMER, Desk, only, text_of, to

IBAN = "FR76 3000 6000 0112 3456 7890 189"
CARD = "4111 1111 1111 1111"
SUBJECT = f"Prélèvement {IBAN} carte {CARD}"


@pytest.mark.parametrize(("text", "masked"), [
    ("FR76-3000-6000-0112-3456-7890-189", "FR76-****-****-****-****-****-189"),
    ("FR76.3000.6000.0112.3456.7890.189", "FR76.****.****.****.****.****.189"),
    ("FR 76 3000 6000 0112 3456 7890 189", "FR 76 **** **** **** **** **** 189"),
    ("carte 4111.1111.1111.1111.", "carte ****.****.****.1111."),
    ("carte 4111/1111/1111/1111", "carte ****/****/****/1111"),
    ("carte 41111111 11111111", "carte ******** ****1111"),
])
def test_the_usual_separators_are_recognised(text: str, masked: str) -> None:
    assert mask_sensitive(text) == masked


@pytest.mark.parametrize("text", [
    "le 12/03/2024 à 10.30", "tel 06.12.34.56.78", "version 2026.11.23.1042", "FR 12 MARS 2026 A PARIS RUE 12",
    "dossier 1234/5678/9012", "4111.1111.1111.1112 (Luhn faux)",
])
def test_dates_phones_and_versions_are_left_alone(text: str) -> None:
    assert mask_sensitive(text) == text


def test_stored_text_keeps_the_iban_for_the_staff_and_never_the_card() -> None:
    assert stored_body(f"{IBAN} / {CARD}") == f"{IBAN} / **** **** **** 1111"
    assert for_customer(stored_body(f"{IBAN} / {CARD}")) == "FR76 **** **** **** **** **** 189 / **** **** **** 1111"


def test_a_card_and_an_iban_in_the_subject_go_only_where_the_policy_says(app: App) -> None:
    desk = Desk(app)
    notif = desk.complaint(subject=SUBJECT, frm=f"Marie Dupont <{CUSTOMER}>",
                           body=f"Bonjour,\nle prélèvement sur {IBAN} avec la carte {CARD} est une erreur.")
    ack = only(to(desk.inbox, CUSTOMER))
    case = desk.case()
    assert CARD not in case.subject and IBAN in case.subject  # stored: card masked, IBAN kept for the staff
    for staff_view in (notif["Subject"], text_of(notif)):
        assert CARD not in staff_view and "**** 1111" in staff_view
        assert IBAN in staff_view  # the staff investigate with it
    for customer_view in (ack["Subject"], text_of(ack), ack.get_body(("html",)).get_content()):  # type: ignore[union-attr]
        assert CARD not in customer_view and "3000 6000" not in customer_view
    assert "FR76 **** **** **** **** **** 189" in ack["Subject"]


def test_an_agent_pasting_a_card_number_sends_only_its_last_four(app: App) -> None:
    desk = Desk(app)
    notif = desk.complaint()
    desk.reply(notif, f"Bonjour Madame,\nla carte {CARD} a été mise en opposition.\nCordialement")
    reply = only(to(desk.new_mail(), CUSTOMER))
    assert CARD not in reply.as_string() and "**** **** **** 1111" in text_of(reply)
    assert all(CARD not in m.body_text for m in desk.messages())
    assert only(to(desk.inbox, AGENT))


def test_logs_mask_the_iban_too() -> None:
    record = logging.LogRecord("mailbot", logging.INFO, __file__, 1, f"iban {IBAN} card {CARD}", None, None)
    line = JsonFormatter().format(record)
    assert IBAN not in line and CARD not in line and "FR76 ****" in line
