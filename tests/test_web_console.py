"""The staff console's work pages over HTTP: queue, search, a case and its actions,
attachments, brands kept apart, who saw what."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.models import Case, Event
from tests.conftest import Clock
from tests.desk import Desk
from tests.test_scheduled_final import hold_the_final
from tests.test_web_staff import sign_in
from tests.webtools import WEB, client, csrf, post_complaint, sent_mails, text_of

AGENT = "agent@kalra-plus.com"
SUPERVISOR = "supervisor@kalra-plus.com"
DK_AGENT = "agent@divikeys.com"
PDF = ("releve.pdf", b"%PDF-1.4 releve", "application/pdf")


@pytest.fixture
def web_app(make_app: Callable[..., App]) -> App:
    return make_app(web=WEB)


def _case(app: App, ref: str) -> Case:
    with db.read_scope(app.engine) as s:
        case = s.exec(select(Case).where(Case.ref == ref)).one()
        s.expunge_all()
    return case


def _events(app: App, ref: str, type_: str) -> list[Event]:
    with db.read_scope(app.engine) as s:
        case = s.exec(select(Case).where(Case.ref == ref)).one()
        rows = list(s.exec(select(Event).where(Event.case_id == case.id, Event.type == type_)))
        s.expunge_all()
    return rows


def _act(c: TestClient, ref: str, action: str, /, **fields: str):  # type: ignore[no-untyped-def]
    return c.post(f"/staff/cases/{ref}/{action}", data={"csrf": csrf(c, f"/staff/cases/{ref}"), **fields})


def test_the_queue_shows_an_agents_brands_soonest_deadline_first(web_app: App, tmp_path: Path, clock: Clock) -> None:
    assert post_complaint(client(web_app), email="first@example.org").status_code == 303
    clock.now += timedelta(days=3)
    assert post_complaint(client(web_app), email="second@example.org").status_code == 303
    assert post_complaint(client(web_app), brand="divikeys").status_code == 303
    clock.now += timedelta(days=5)  # the first is overdue now
    c = sign_in(web_app, tmp_path, AGENT)
    page = c.get("/staff/queue").text
    refs = re.findall(r'class="ref">([A-Z]+-\d{4}-\d{6})<', page)
    assert refs == ["KP-2026-000001", "KP-2026-000002"]  # overdue first; no Divikeys case
    assert "en retard de" in page and "Dossiers 1 à 2 sur 2" in page
    overdue = c.get("/staff/queue?overdue=1").text
    assert re.findall(r'class="ref">([A-Z]+-\d{4}-\d{6})<', overdue) == ["KP-2026-000001"]
    bad = c.get("/staff/queue?status=bogus")
    assert bad.status_code == 400 and "acknowledged" in bad.text  # the valid values are listed
    assert c.get("/staff/queue?brand=divikeys").status_code == 400


def test_search_finds_a_customer_within_the_agents_brands(web_app: App, tmp_path: Path) -> None:
    assert post_complaint(client(web_app), name="Hortense Lebrun", email="hortense@example.org").status_code == 303
    assert post_complaint(client(web_app), brand="divikeys", name="Hortense Autre",
                          email="autre@example.org").status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    page = c.get("/staff/search?q=hortense").text
    assert re.findall(r'class="ref">([A-Z]+-\d{4}-\d{6})<', page) == ["KP-2026-000001"]


def test_a_case_page_shows_everything_and_records_who_saw_it(web_app: App, tmp_path: Path) -> None:
    assert post_complaint(client(web_app), files=[PDF]).status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    page = c.get("/staff/cases/KP-2026-000001").text
    assert "Mon virement de 1 250,00 EUR" in page and "releve.pdf" in page
    assert "(heure de Paris)" in page and "CET" not in page  # times in the brand's zone, named
    assert "plafond réglementaire : 35 jours ouvrés" in page  # a payment-services bank: 35 at most
    [viewed] = _events(web_app, "KP-2026-000001", "viewed")
    assert viewed.actor == AGENT
    r = c.get("/staff/cases/KP-2026-000001/attachments/1")
    assert r.status_code == 200 and r.content == b"%PDF-1.4 releve"
    assert r.headers["content-type"] == "application/pdf" and r.headers["content-disposition"].startswith("inline")
    assert "sandbox" in r.headers["content-security-policy"]
    [opened] = _events(web_app, "KP-2026-000001", "attachment_opened")
    assert (opened.actor, opened.data["filename"]) == (AGENT, "releve.pdf")
    assert c.get("/staff/cases/KP-2026-000001/attachments/2").status_code == 404


def test_staff_of_another_brand_get_404_for_its_cases_and_attachments(web_app: App, tmp_path: Path) -> None:
    assert post_complaint(client(web_app), files=[PDF]).status_code == 303
    c = sign_in(web_app, tmp_path, DK_AGENT)
    assert c.get("/staff/cases/KP-2026-000001").status_code == 404
    assert c.get("/staff/cases/KP-2026-000001/attachments/1").status_code == 404
    r = c.post("/staff/cases/KP-2026-000001/note", data={"csrf": csrf(c, "/staff/queue"), "text": "x"})
    assert r.status_code == 404
    assert _events(web_app, "KP-2026-000001", "viewed") == [] and _events(web_app, "KP-2026-000001", "note") == []


def test_an_html_attachment_is_downloaded_never_shown_as_a_page(web_app: App, tmp_path: Path) -> None:
    evil = ("<img src=x onerror=alert(1)>.txt", b"<script>alert(1)</script>", "text/html")
    assert post_complaint(client(web_app), files=[evil]).status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    page = c.get("/staff/cases/KP-2026-000001").text
    assert "<img src=x" not in page
    r = c.get("/staff/cases/KP-2026-000001/attachments/1")
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith("attachment")


def test_customer_html_is_inert_on_the_case_page(web_app: App, tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    assert post_complaint(client(web_app), name=f"Eve {evil}", subject=f"S {evil}",
                          description=f"Texte {evil} assez long").status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    for page in (c.get("/staff/cases/KP-2026-000001").text, c.get("/staff/queue").text):
        assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_an_agent_answers_notes_and_extends_from_the_case_page(web_app: App, tmp_path: Path) -> None:
    assert post_complaint(client(web_app)).status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    ref = "KP-2026-000001"
    assert _act(c, ref, "note", text="Appeler le partenaire de paiement.").status_code == 303
    r = _act(c, ref, "reply", text="Nous vérifions votre virement auprès de notre partenaire.")
    assert r.status_code == 303 and r.headers["location"].startswith(f"/staff/cases/{ref}?done=reply")
    assert _act(c, ref, "extend", days="5", reason="analyse avec notre partenaire").status_code == 303
    page = c.get(f"/staff/cases/{ref}?done=extend").text
    assert "Appeler le partenaire de paiement." in page and "Délai prolongé" in page
    to_customer = [m for m in sent_mails(web_app, tmp_path / "sent") if "marie@" in str(m["To"])]
    texts = "\n".join(text_of(m) for m in to_customer)
    assert "Nous vérifions votre virement" in texts and "analyse avec notre partenaire" in texts
    assert "Appeler le partenaire" not in texts  # a note never reaches the customer
    assert _case(web_app, ref).extended_days == 5


def test_a_final_response_has_one_field_per_section_and_a_missing_one_keeps_the_rest(
        web_app: App, tmp_path: Path) -> None:
    assert post_complaint(client(web_app)).status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    ref = "KP-2026-000001"
    sections = {"explanation": "Un contrôle l'avait bloqué.", "corrective_measures": "Contrôle ajusté.",
                "solution": "Virement exécuté le 10 novembre."}  # the sections Kalra-plus requires
    page = c.get(f"/staff/cases/{ref}").text
    assert [k for k in re.findall(r'id="f-final-(\w+)"', page)] == list(sections)
    r = _act(c, ref, "final", **{**sections, "solution": ""}, outcome="accepted")
    assert r.status_code == 422 and "solution" in r.text and "Contrôle ajusté.</textarea>" in r.text
    assert _case(web_app, ref).status != "answered"
    assert _act(c, ref, "final", **sections, outcome="accepted").status_code == 303
    assert _case(web_app, ref).status == "answered"
    [final] = [m for m in sent_mails(web_app, tmp_path / "sent") if "Réponse" in str(m["Subject"])]
    body = text_of(final)
    assert all(v in body for v in sections.values())


def test_a_case_page_says_when_its_scheduled_final_goes_or_that_it_was_held(web_app: App, tmp_path: Path) -> None:
    desk = Desk(web_app)  # the agent schedules the final response by mail (`#final at`)
    desk.reply(desk.complaint(), "#final at 2026-11-27T10:00\nExplication : un contrôle a retenu le virement.\n"
               "Mesures correctives : seuil revu.\nSolution : virement exécuté.\n")
    c = sign_in(web_app, tmp_path, AGENT)
    page = c.get("/staff/cases/KP-2026-000001").text
    assert "Réponse finale programmée pour le vendredi 27 novembre 2026 à 10:00 (heure de Paris)" in page
    assert "Final response scheduled for Friday 27 November 2026 at 10:00 (Paris time)" in \
        c.get("/staff/cases/KP-2026-000001?lang=en").text
    hold_the_final(desk)  # the customer writes first
    page = unescape(sign_in(web_app, tmp_path, AGENT).get("/staff/cases/KP-2026-000001").text)  # signed out since
    assert "Réponse finale suspendue, en attente de l'agent : elle devait partir le vendredi 27 novembre 2026 " \
           "à 10:00 (heure de Paris)" in page
    assert "Réponse finale programmée" not in page


def test_closing_without_a_final_response_is_refused_to_an_agent_and_the_reason_is_kept(
        web_app: App, tmp_path: Path) -> None:
    assert post_complaint(client(web_app)).status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    r = _act(c, "KP-2026-000001", "close", reason="doublon d'un autre dossier")
    assert r.status_code == 422 and "supervisor" in r.text and 'value="doublon d&#39;un autre dossier"' in r.text
    assert _case(web_app, "KP-2026-000001").status != "closed"
    boss = sign_in(web_app, tmp_path, SUPERVISOR)
    assert _act(boss, "KP-2026-000001", "close", reason="doublon d'un autre dossier").status_code == 303
    assert _case(web_app, "KP-2026-000001").status == "closed"


def test_an_action_without_csrf_is_403_and_changes_nothing(web_app: App, tmp_path: Path) -> None:
    assert post_complaint(client(web_app)).status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    r = c.post("/staff/cases/KP-2026-000001/assign", data={"agent": AGENT})
    assert r.status_code == 403 and _case(web_app, "KP-2026-000001").assignee is None
    assert _act(c, "KP-2026-000001", "assign", agent=AGENT).status_code == 303
    assert _case(web_app, "KP-2026-000001").assignee == AGENT


def test_a_supervisor_downloads_the_register_of_their_brands(web_app: App, tmp_path: Path) -> None:
    assert post_complaint(client(web_app)).status_code == 303
    assert post_complaint(client(web_app), brand="divikeys").status_code == 303
    c = sign_in(web_app, tmp_path, SUPERVISOR)
    r = c.get("/staff/register.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0].startswith("reference,round") and len(lines) == 2 and lines[1].startswith("KP-2026-000001")
    assert sign_in(web_app, tmp_path, AGENT).get("/staff/register.csv").status_code == 404


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # (PostgreSQL's plan depends on the table's size)
def test_the_queue_and_dashboard_counts_read_the_index_alone(web_app: App) -> None:
    from sqlalchemy import text

    with web_app.engine.connect() as conn:
        for where in ("brand = 'kalra-plus' AND status IN ('new', 'acknowledged', 'in_progress')",
                      "brand = 'kalra-plus' AND status IN ('new', 'acknowledged') AND due_at < '2026-12-01'"):
            plan = " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN SELECT count(*) FROM cases WHERE {where}")))
            assert "COVERING INDEX ix_cases_queue" in plan, plan


def test_a_reply_with_files_reaches_the_customer_with_them_and_a_refused_file_sends_nothing(
        web_app: App, tmp_path: Path) -> None:
    assert post_complaint(client(web_app)).status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    ref = "KP-2026-000001"
    token = csrf(c, f"/staff/cases/{ref}")
    r = c.post(f"/staff/cases/{ref}/reply", data={"csrf": token, "text": "Voici le formulaire à remplir."},
               files=[("files", ("formulaire.exe", b"MZ", "application/octet-stream"))])
    assert r.status_code == 422 and "nothing was sent" in r.text
    assert "Voici le formulaire à remplir.</textarea>" in r.text
    r = c.post(f"/staff/cases/{ref}/reply", data={"csrf": token, "text": "Voici le formulaire à remplir."},
               files=[("files", ("formulaire.pdf", b"%PDF-1.4 form", "application/pdf"))])
    assert r.status_code == 303
    [reply] = [m for m in sent_mails(web_app, tmp_path / "sent")
               if "marie@" in str(m["To"]) and "Voici le formulaire" in text_of(m)]
    assert [(p.get_filename(), p.get_content()) for p in reply.iter_attachments()] == [("formulaire.pdf", b"%PDF-1.4 form")]
    assert "formulaire.pdf" in c.get(f"/staff/cases/{ref}").text


def test_the_case_page_offers_every_action_of_the_agents_mail_commands(web_app: App, tmp_path: Path) -> None:
    from mailbot.cases.agent_mail import COMMANDS

    assert post_complaint(client(web_app)).status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    ref = "KP-2026-000001"
    sections = {"explanation": "Contrôle.", "corrective_measures": "Ajusté.", "solution": "Exécuté."}
    before = set(re.findall(rf'action="/staff/cases/{ref}/(\w+)', c.get(f"/staff/cases/{ref}").text))
    assert _act(c, ref, "final", **sections, outcome="accepted").status_code == 303
    page = c.get(f"/staff/cases/{ref}").text  # answered: re-examination and reopening are offered too
    offered = before | set(re.findall(rf'(?:form)?action="/staff/cases/{ref}/(\w+)', page))
    assert {w.lstrip("#") for w in COMMANDS} <= offered
    for field in re.findall(r'<(?:input|select|textarea)\b[^>]*\bid="([^"]+)"', page):
        assert f'for="{field}"' in page, f"no label for {field}"


def test_an_agent_merges_a_customers_second_case_into_the_first_from_either_page(
        web_app: App, tmp_path: Path, clock: Clock) -> None:
    assert post_complaint(client(web_app), files=[PDF]).status_code == 303
    clock.now += timedelta(hours=2)
    assert post_complaint(client(web_app), subject="Toujours rien", description="Mon virement n'est toujours "
                          "pas arrivé, je vous relance.").status_code == 303
    assert post_complaint(client(web_app), email="autre@example.org").status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    first, second, other = "KP-2026-000001", "KP-2026-000002", "KP-2026-000003"
    page = c.get(f"/staff/cases/{second}").text
    assert f'<option value="{first}">' in page and f'<option value="{other}">' not in page  # the customer's cases
    refused = _act(c, second, "merge", ref=other)  # another customer's case: refused, what was typed kept
    assert refused.status_code == 422 and f'value="{other}"' in refused.text
    assert _case(web_app, other).status != "closed" and _case(web_app, second).status != "closed"
    r = _act(c, second, "merge", ref=first.lower())
    assert r.status_code == 303 and r.headers["location"].startswith(f"/staff/cases/{first}?done=merge")
    merged = _case(web_app, second)
    assert (merged.status, merged.outcome) == ("closed", "merged")
    kept = c.get(r.headers["location"]).text
    assert "Toujours rien" in kept and "releve.pdf" in kept and "Dossiers fusionnés" in kept
    [notice] = [m for m in sent_mails(web_app, tmp_path / "sent")
                if "marie@" in str(m["To"]) and second in text_of(m) and first in str(m["Subject"])]
    assert _events(web_app, first, "merged_in")[0].actor == AGENT
    gone = c.get(f"/staff/cases/{second}").text  # the merged case: no more actions, a link to the kept one
    assert f'href="/staff/cases/{first}' in gone and f"/staff/cases/{second}/reopen" not in gone


def test_linking_cases_names_each_on_the_others_page_and_sends_nothing(web_app: App, tmp_path: Path) -> None:
    assert post_complaint(client(web_app)).status_code == 303
    assert post_complaint(client(web_app), email="conjoint@example.org").status_code == 303
    assert post_complaint(client(web_app), brand="divikeys").status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    before = len(sent_mails(web_app, tmp_path / "sent"))
    assert _act(c, "KP-2026-000001", "link", ref="DK-2026-000001").status_code == 422  # another brand's: unknown
    assert _act(c, "KP-2026-000001", "link", ref="KP-2026-000002").status_code == 303
    for ref, other in (("KP-2026-000001", "KP-2026-000002"), ("KP-2026-000002", "KP-2026-000001")):
        assert f'<a href="/staff/cases/{other}' in c.get(f"/staff/cases/{ref}").text
    assert len(sent_mails(web_app, tmp_path / "sent")) == before


def test_an_answered_case_is_reexamined_or_reopened_from_its_page(web_app: App, tmp_path: Path) -> None:
    assert post_complaint(client(web_app)).status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    ref = "KP-2026-000001"
    assert _act(c, ref, "reexamine").status_code == 422  # not answered yet
    sections = {"explanation": "Contrôle.", "corrective_measures": "Ajusté.", "solution": "Exécuté."}
    assert _act(c, ref, "final", **sections, outcome="rejected").status_code == 303
    assert _act(c, ref, "reexamine", reason="le client conteste par téléphone").status_code == 303
    assert _case(web_app, ref).status == "reexamination"
    assert any("examen" in str(m["Subject"]).lower() for m in sent_mails(web_app, tmp_path / "sent")
               if "marie@" in str(m["To"]))


def test_tier_category_and_priority_change_from_the_case_page(web_app: App, tmp_path: Path) -> None:
    assert post_complaint(client(web_app)).status_code == 303
    c = sign_in(web_app, tmp_path, AGENT)
    ref = "KP-2026-000001"
    assert 'id="f-tier-reason"' in c.get(f"/staff/cases/{ref}").text
    assert _act(c, ref, "tier", tier="complex", reason="enquête auprès du partenaire").status_code == 303
    assert _act(c, ref, "category", category="frais").status_code == 303
    assert _act(c, ref, "priority", priority="urgent").status_code == 303
    case = _case(web_app, ref)
    assert (case.tier, case.category, case.priority) == ("complex", "frais", "urgent")
    assert any("enquête auprès du partenaire" in text_of(m) for m in sent_mails(web_app, tmp_path / "sent")
               if "marie@" in str(m["To"]))


def test_html_and_script_in_a_customers_mail_are_inert_on_every_staff_page(web_app: App, tmp_path: Path) -> None:
    from mailbot.ingest.pipeline import ingest
    from tests.mails import mail

    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    raw = mail(frm=f'"Eve {evil}" <eve@example.org>', subject=f"Virement {evil}", body=None,
               html=f"<p>Mon virement de 300 EUR du 2 novembre {evil} n'est pas arrivé.</p><script>alert(3)</script>",
               attachments=((f"{evil}.pdf", "application/pdf", b"%PDF-1.4 x"),))
    [ref] = ingest(web_app, raw, "smtp").case_refs
    c = sign_in(web_app, tmp_path, AGENT)
    for path in (f"/staff/cases/{ref}", "/staff/queue", "/staff/search?q=virement"):
        page = c.get(path).text
        assert ref in page, path
        assert "<script>alert(" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
    r = c.get(f"/staff/cases/{ref}/attachments/1?download=1")
    assert r.status_code == 200 and "<" not in r.headers["content-disposition"].split("filename*")[0]


def test_every_field_of_every_page_has_a_label_in_both_languages(web_app: App, tmp_path: Path) -> None:
    from tests.test_web import _status_link

    status = _status_link(web_app, tmp_path)  # the customer's case, KP-2026-000001
    agent, boss = sign_in(web_app, tmp_path, AGENT), sign_in(web_app, tmp_path, SUPERVISOR)
    anyone = client(web_app)
    pages = [(anyone, "/complaint/kalra-plus"), (anyone, "/complaint/divikeys"), (anyone, status),
             (agent, "/staff/queue"), (agent, "/staff/search?q=virement"), (agent, "/staff/cases/KP-2026-000001"),
             (boss, "/staff/dashboard"), (anyone, "/staff/signin")]
    labels: dict[str, list[str]] = {}
    for lang in ("fr", "en"):
        for c, path in pages:
            page = c.get(path + ("&" if "?" in path else "?") + f"lang={lang}").text
            fields = re.findall(r'<(?:input|select|textarea)\b(?![^>]*type="(?:hidden|submit)")[^>]*>', page)
            assert fields or path == "/staff/dashboard", path
            for field in fields:
                m = re.search(r'\bid="([^"]+)"', field)
                assert m, f"{path}: a field without an id: {field}"
                label = re.search(rf'<label for="{re.escape(m.group(1))}"[^>]*>(.*?)</label>', page, re.S)
                assert label and label.group(1).strip(), f"{path} ({lang}): no label for {m.group(1)}"
                labels.setdefault(f"{path}#{m.group(1)}", []).append(re.sub(r"<[^>]+>", "", label.group(1)).strip())
    same = [k for k, (fr, en) in labels.items() if fr == en and not fr.isupper()]
    assert len(same) <= 2, same  # the words differ between French and English (a code like "IBAN" may not)


def test_the_database_down_gives_staff_a_clear_503_page(web_app: App) -> None:
    from tests.test_web import _down

    c = client(_down(web_app))
    c.cookies.set("mb_staff", "a-session-cookie")
    for path in ("/staff/queue", "/staff/cases/KP-2026-000001"):
        r = c.get(path)
        assert r.status_code == 503 and "momentanément indisponible" in r.text, path
