"""The web side in a real browser (Chromium through Selenium), against a real `mailbot web`
process: the customer's journey and the staff's. Each page is saved as a screenshot
(tests/browser.py says where). Kept to these journeys: the security checks are fast
HTTP tests (tests/test_web*.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.config import load_config
from mailbot.models import Attachment, Case, Event, Message
from tests.browser import Browser, open_browser
from tests.procs import free_port
from tests.webtools import WEB_SECRET, link_in, sent_mails, start_web, stop, text_of

pytestmark = pytest.mark.slow  # processes, servers or corpora: left out by `make test-fast`


class Site:
    """A `mailbot web` process on SQLite, and the same database seen from the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp_path
        self.proc = start_web(tmp_path, self.port, f"sqlite:///{tmp_path}/mailbot.db")
        self.app = App.open(load_config(tmp_path / "config.toml"))

    def mails_to(self, address: str) -> list:
        return [m for m in sent_mails(self.app, self.tmp / "sent") if m["To"].addresses[0].addr_spec == address]

    def case(self) -> Case:
        with db.read_scope(self.app.engine) as s:
            case = s.exec(select(Case)).one()
            s.expunge_all()
        return case

    def close(self) -> None:
        stop(self.proc)
        self.app.close()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("MAILBOT_WEB_SECRET", WEB_SECRET)  # the dispatcher signs the status links too
    s = Site(tmp_path)
    yield s
    s.close()


@pytest.fixture
def customer(site: Site) -> Iterator[Browser]:
    yield from open_browser(site.base, "customer")


def _fill_the_form(b: Browser, statement: Path) -> None:
    b.fill("f-name", "Marie Curie")
    b.fill("f-email", "marie.curie@example.org")
    b.fill("f-phone", "06 12 34 56 78")
    b.fill("f-customer_number", "C-004512")
    b.set_value("f-fact_date", "2026-11-03")  # the date picker's keys depend on the browser's locale
    b.choose("f-operation_type", "virement")
    b.fill("f-amount", "1250,00")
    b.fill("f-references", "VIR-88213")
    b.fill("f-subject", "Virement non reçu")
    b.fill("f-description", "Mon virement de 1 250,00 EUR du 3 novembre n'est jamais arrivé "
                            "chez le bénéficiaire.")
    b.fill("f-steps_taken", "J'ai appelé le service client le 5 novembre.")
    b.attach("f-files", statement)


def test_a_customer_files_a_complaint_follows_it_adds_a_document_and_asks_for_re_examination(
        site: Site, customer: Browser, tmp_path: Path) -> None:
    b = customer
    statement = tmp_path / "releve-novembre.pdf"
    statement.write_bytes(b"%PDF-1.4\n% statement of November\n")
    b.go("/complaint/kalra-plus")
    b.shot("form")
    # A first try with a mistake: everything typed comes back, the error is named.
    _fill_the_form(b, statement)
    b.fill("f-email", "marie.curie@")
    b.press("button.primary")
    assert "Cette adresse e-mail n'est pas valide." in b.text("#errors")
    b.shot("form-error")
    assert b.driver.find_element("id", "f-references").get_attribute("value") == "VIR-88213"
    assert "n'est jamais arrivé" in b.driver.find_element("id", "f-description").get_attribute("value")
    b.fill("f-email", "marie.curie@example.org")
    b.attach("f-files", statement)  # files are chosen again, as the page says
    b.press("button.primary")
    ref = b.text("#ref")
    assert re.fullmatch(r"KP-\d{4}-\d{6}", ref)
    b.shot("done")
    case = site.case()
    assert (case.channel, case.customer_email) == ("form", "marie.curie@example.org")
    assert case.extracted["fact_dates"][0] == "2026-11-03" and case.extracted["references"] == ["VIR-88213"]
    # The acknowledgement arrives, with the status link.
    [ack] = site.mails_to("marie.curie@example.org")
    assert ref in ack["Subject"] and "Accusé de réception" in ack["Subject"]
    link = link_in([ack], re.escape(site.base) + r"/status/\S+")
    b.go(link)
    assert b.text("#status") == "Enregistrée" and ref in b.text("h1")
    assert "releve-novembre.pdf" in b.text()
    b.shot("status")
    # A further document, from the status page.
    invoice = tmp_path / "avis-de-virement.pdf"
    invoice.write_bytes(b"%PDF-1.4\n% transfer notice\n")
    b.attach("f-docs", invoice)
    b.fill("f-docs-text", "Voici l'avis de virement de ma banque.")
    b.press("#docs-send")
    assert "vos documents sont joints" in b.text("#notice")
    assert "avis-de-virement.pdf" in b.text()
    b.shot("status-document-added")
    with db.read_scope(site.app.engine) as s:
        names = {a.filename for a in s.exec(select(Attachment))}
    assert names == {"releve-novembre.pdf", "avis-de-virement.pdf"}
    # Later: the final response (here from the command line's action), then a re-examination.
    _final_response(site)
    b.go(link)
    assert b.text("#status") == "Réponse envoyée"
    assert "Le virement a été exécuté le 10 novembre" in b.text()
    b.shot("status-answered")
    b.fill("f-reexam", "Je conteste : les frais de retard ne m'ont pas été remboursés.")
    b.press("#reexam-send")
    assert "demande de réexamen est enregistrée" in b.text("#notice")
    assert b.text("#status") == "En réexamen"
    b.shot("status-reexamination")
    assert site.case().status == "reexamination"
    reexam_ack = site.mails_to("marie.curie@example.org")[-1]
    assert "réexamen" in (reexam_ack["Subject"] + text_of(reexam_ack)).lower()


def _final_response(site: Site) -> None:
    from mailbot.cases import actions

    text = ("Résumé : vous nous avez signalé un virement non reçu.\n"
            "Explication : le virement était bloqué par un contrôle.\n"
            "Démarches : nous avons vérifié l'opération.\n"
            "Mesures correctives : le contrôle a été ajusté.\n"
            "Solution : Le virement a été exécuté le 10 novembre.\n")
    with db.session_scope(site.app.engine) as s:
        case = s.exec(select(Case)).one()
        about = s.exec(select(Message).where(Message.case_id == case.id, Message.direction == "in")).first()
        actions.final(s, site.app, case, "agent@kalra-plus.com", text, about=about)
    sent_mails(site.app, site.tmp / "sent")


@pytest.fixture
def agent(site: Site) -> Iterator[Browser]:
    yield from open_browser(site.base, "staff")


def _png() -> bytes:
    """A small real PNG (a 40×20 picture: a scanned receipt, for the journey)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([200, 60, 60] * 40) for _ in range(20))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40, 20, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _sign_in(site: Site, b: Browser, address: str) -> None:
    b.go("/staff/signin")
    b.fill("f-email", address)
    b.press("button.primary")
    assert "un lien de connexion vient d'y être envoyé" in b.text("#sent")
    b.shot(f"signin-requested-{address.split('@')[0]}")
    [mail] = site.mails_to(address)[-1:]
    link = link_in([mail], re.escape(site.base) + r"/staff/signin/\S+")
    b.go(link)
    b.shot(f"signin-confirm-{address.split('@')[0]}")
    b.press("#signin-go")


def test_an_agent_signs_in_finds_the_case_opens_its_attachment_and_answers_and_the_supervisor_sees_it(
        site: Site, agent: Browser, tmp_path: Path) -> None:
    b = agent
    receipt = tmp_path / "ticket-de-caisse.png"
    receipt.write_bytes(_png())
    with Browser(site.base, "customer-for-staff") as customer:
        customer.go("/complaint/kalra-plus")
        _fill_the_form(customer, receipt)
        customer.press("button.primary")
        ref = customer.text("#ref")
    _sign_in(site, b, "agent@kalra-plus.com")
    assert "/staff/queue" in b.url
    assert ref in b.text("table")
    b.shot("queue")
    b.go(next(href for label, href in b.links().items() if label == ref))
    assert "Mon virement de 1 250,00 EUR" in b.text() and "ticket-de-caisse.png" in b.text()
    b.shot("case")
    b.go(next(href for label, href in b.links().items() if label == "ticket-de-caisse.png"))
    assert b.driver.execute_script("return document.images.length && document.images[0].naturalWidth") == 40
    b.shot("attachment")
    b.go(f"/staff/cases/{ref}")
    b.fill("f-final-explanation", "Le virement était retenu par un contrôle automatique.")
    b.fill("f-final-corrective_measures", "Le contrôle a été ajusté pour ce type d'opération.")
    b.fill("f-final-solution", "Le virement a été exécuté le 10 novembre.")
    b.press("#final-send")
    assert "Réponse finale envoyée." in b.text("#notice")
    assert b.text("#case-status") == "Réponse envoyée"
    b.shot("case-answered")
    assert site.case().status == "answered"
    [final] = [m for m in site.mails_to("marie.curie@example.org") if "Réponse" in m["Subject"]]
    assert "Le virement a été exécuté le 10 novembre." in text_of(final)
    with db.read_scope(site.app.engine) as s:
        seen = {(e.type, e.actor) for e in s.exec(select(Event).where(Event.case_id == site.case().id))}
    assert {("viewed", "agent@kalra-plus.com"), ("attachment_opened", "agent@kalra-plus.com")} <= seen
    # The supervisor's dashboard counts the answer.
    with Browser(site.base, "supervisor") as boss:
        _sign_in(site, boss, "supervisor@kalra-plus.com")
        assert "/staff/dashboard" in boss.url
        assert boss.text("#open-kalra-plus") == "0"
        assert "< 1 sem." in boss.text(".brand-figures")
        boss.shot("dashboard")
