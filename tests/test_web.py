"""The web side, customer half, over HTTP: the complaint form, the intake API, the status
page, and what each refuses (CSRF, floods, big uploads, wrong keys, forged links)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.caselocks import lock
from mailbot.config import parse_config
from mailbot.models import Attachment, Case, Inbound, Message, WebSubmission
from mailbot.web.i18n import all_keys
from tests.conftest import Clock, config_data
from tests.webtools import BASE, WEB, client, csrf, link_in, post_complaint, sent_mails, text_of

API_KEY = "kp-site-key-0123456789abcdef"
API = {"api_clients": [{"brand": "kalra-plus", "name": "espace-client",
                        "key_sha256": hashlib.sha256(API_KEY.encode()).hexdigest()}]}


@pytest.fixture
def web_app(make_app: Callable[..., App]) -> App:
    return make_app(web={**WEB, **API})


def _cases(app: App) -> list[Case]:
    with db.read_scope(app.engine) as s:
        rows = list(s.exec(select(Case).order_by(Case.id)).all())
        s.expunge_all()
    return rows


def _count(app: App, model: type) -> int:
    with db.read_scope(app.engine) as s:
        return len(s.exec(select(model)).all())


def test_a_form_complaint_is_a_case_of_channel_form_acknowledged_with_its_status_link(
        web_app: App, tmp_path: Path) -> None:
    c = client(web_app)
    r = post_complaint(c, files=[("relevé <b>.pdf", b"%PDF-1.4 statement", "application/pdf")])
    assert r.status_code == 303, r.text
    done = c.get(r.headers["location"])
    assert "KP-2026-000001" in done.text
    [case] = _cases(web_app)
    assert (case.channel, case.customer_email, case.customer_name) == ("form", "marie@example.org", "Marie Curie")
    assert case.extracted["fact_dates"][0] == "2026-11-03"
    assert case.extracted["amounts"] == [{"value": "1250.00", "currency": "EUR"}]
    assert case.extracted["references"] == ["VIR-88213"]
    with db.read_scope(web_app.engine) as s:
        [att] = s.exec(select(Attachment)).all()
        assert att.filename.endswith(".pdf") and att.sha256 is not None
    mails = sent_mails(web_app, tmp_path / "sent")
    ack = next(m for m in mails if m["To"].addresses[0].addr_spec == "marie@example.org")
    assert "KP-2026-000001" in ack["Subject"]
    assert "reçu votre réclamation le lundi 23 novembre 2026 à 10:00 (heure de Paris)" in text_of(ack)
    link = link_in([ack], re.escape(BASE) + r"/status/\S+")
    page = c.get(link.removeprefix(BASE))
    assert page.status_code == 200
    assert "Virement non reçu" in page.text and "relevé" in page.text
    assert "lundi 23 novembre 2026 à 10:00 (heure de Paris)" in page.text  # a time names its zone


def test_without_a_public_url_customer_mail_carries_no_status_link(make_app: Callable[..., App],
                                                                    tmp_path: Path) -> None:
    app = make_app(web={"secret": WEB["secret"]})
    r = post_complaint(client(app))
    assert r.status_code == 303
    [ack] = [m for m in sent_mails(app, tmp_path / "sent") if "marie@" in m["To"]]
    assert "/status/" not in text_of(ack)


def test_an_error_shows_the_form_again_with_everything_typed(web_app: App) -> None:
    c = client(web_app)
    r = post_complaint(c, email="not-an-address", description="Trop court",
                       steps_taken="Appel le 5 <novembre> & courrier")
    assert r.status_code == 422
    assert 'value="not-an-address"' in r.text and 'aria-invalid="true"' in r.text
    assert "Appel le 5 &lt;novembre&gt; &amp; courrier</textarea>" in r.text
    assert 'value="VIR-88213"' in r.text and '<option value="virement" selected>' in r.text
    assert "Cette adresse e-mail n&#39;est pas valide." in r.text and "joignez-les de nouveau" in r.text
    assert _cases(web_app) == []


def test_a_post_without_its_csrf_token_is_refused_with_403(web_app: App) -> None:
    c = client(web_app)
    csrf(c)  # the browser has its cookie, but the form lacks the field
    r = c.post("/complaint/kalra-plus", data={"name": "x", "email": "x@example.org"})
    assert r.status_code == 403
    other = client(web_app)  # a token from another browser does not pair with this cookie
    r = c.post("/complaint/kalra-plus", data={"csrf": csrf(other), "name": "x"})
    assert r.status_code == 403
    assert _cases(web_app) == []


def test_the_honeypot_field_thanks_a_robot_and_records_nothing(web_app: App) -> None:
    r = post_complaint(client(web_app), website="http://spam.example")
    assert r.status_code == 200
    assert _cases(web_app) == [] and _count(web_app, Inbound) == 0


def test_a_flood_from_one_address_or_one_client_gets_429_and_records_nothing(make_app: Callable[..., App]) -> None:
    app = make_app(web={**WEB, "limit_per_address": 2, "limit_per_ip": 3})
    c = client(app)
    assert [post_complaint(c).status_code for _ in range(3)] == [303, 303, 429]
    assert len(_cases(app)) == 2
    r = post_complaint(c, email="other@example.org")  # a new address, the same client: 3rd of the hour
    assert r.status_code == 303
    r = post_complaint(c, email="third@example.org", subject="Encore")
    assert r.status_code == 429 and 'value="Encore"' in r.text  # what was typed is still there
    assert len(_cases(app)) == 3 and _count(app, Inbound) == 3 and _count(app, WebSubmission) == 3


def test_the_limits_count_the_last_hour_only(make_app: Callable[..., App], clock: Clock) -> None:
    app = make_app(web={**WEB, "limit_per_address": 1})
    c = client(app)
    assert post_complaint(c).status_code == 303
    assert post_complaint(c).status_code == 429
    clock.now += timedelta(minutes=61)
    assert post_complaint(c).status_code == 303


def test_files_of_a_refused_type_or_too_many_are_refused_with_the_form_kept(make_app: Callable[..., App]) -> None:
    app = make_app(web={**WEB, "max_files": 1})
    c = client(app)
    r = post_complaint(c, files=[("virus.exe", b"MZ", "application/octet-stream")])
    assert r.status_code == 422 and "Type de fichier non accepté" in r.text
    r = post_complaint(c, files=[("a.pdf", b"%PDF", "application/pdf"), ("b.pdf", b"%PDF", "application/pdf")])
    assert r.status_code == 422 and "Trop de fichiers" in r.text
    assert _cases(app) == []


def test_an_oversized_upload_is_refused_with_413(make_app: Callable[..., App]) -> None:
    app = make_app(web={**WEB, "max_request_size": 50_000})
    r = post_complaint(client(app), files=[("big.pdf", b"%" * 60_000, "application/pdf")])
    assert r.status_code == 413
    assert _cases(app) == []


def test_the_form_speaks_english_when_asked(web_app: App) -> None:
    r = client(web_app).get("/complaint/divikeys?lang=en")
    assert r.status_code == 200 and '<html lang="en">' in r.text
    for label in ("Full name", "Date of the facts", "Type of operation", "Supporting documents"):
        assert label in r.text
    assert len(re.findall(r"<label for=", r.text)) >= 13  # every field has its label


def test_both_languages_have_every_word() -> None:
    keys = all_keys()
    assert keys["fr"] == keys["en"]


def test_pages_carry_security_headers(web_app: App) -> None:
    r = client(web_app).get("/complaint/kalra-plus")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer" and r.headers["x-frame-options"] == "DENY"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie


# -- the status page ----------------------------------------------------------------------

def _status_link(app: App, tmp_path: Path, **fields: str) -> str:
    c = client(app)
    assert post_complaint(c, **fields).status_code == 303
    mails = sent_mails(app, tmp_path / "sent")
    return link_in(mails, re.escape(BASE) + r"/status/\S+").removeprefix(BASE)


def test_a_forged_or_moved_status_link_is_404(web_app: App, tmp_path: Path) -> None:
    link = _status_link(web_app, tmp_path)
    c = client(web_app)
    assert c.get(link).status_code == 200
    assert c.get(link[:-1] + ("0" if link[-1] != "0" else "1")).status_code == 404
    other = _status_link(web_app, tmp_path, email="jean@example.org")
    sig = link.rsplit("/", 1)[1]
    assert c.get(other.rsplit("/", 1)[0] + "/" + sig).status_code == 404  # another case's signature
    assert c.get("/status/KP-2026-999999/" + sig).status_code == 404


def test_the_status_link_ends_with_the_case_retention(web_app: App, tmp_path: Path, clock: Clock) -> None:
    link = _status_link(web_app, tmp_path)
    with db.session_scope(web_app.engine) as s:
        case = lock(s, s.exec(select(Case)).one())
        case.status, case.closed_at = "closed", clock.now
        s.add(case)
    c = client(web_app)
    assert c.get(link).status_code == 200
    clock.now += timedelta(days=365 * 5 + 1)
    r = c.get(link)
    assert r.status_code == 410 and "plus valable" in r.text


def test_documents_sent_from_the_status_page_join_the_case_by_its_token(web_app: App, tmp_path: Path) -> None:
    link = _status_link(web_app, tmp_path)
    c = client(web_app)
    token = csrf(c, link)
    r = c.post(link + "/documents", data={"csrf": token, "text": "Voici le relevé."},
               files=[("files", ("releve-novembre.pdf", b"%PDF-1.4 nov", "application/pdf"))])
    assert r.status_code == 303, r.text
    assert "done=added" in r.headers["location"]
    with db.read_scope(web_app.engine) as s:
        case = s.exec(select(Case)).one()
        msgs = s.exec(select(Message).where(Message.case_id == case.id, Message.direction == "in")).all()
        assert [m.route_signal for m in msgs][-1] == "reply_token"
        assert "Voici le relevé." in msgs[-1].body_text
        names = [a.filename for a in s.exec(select(Attachment).where(Attachment.message_id == msgs[-1].id))]
    assert names == ["releve-novembre.pdf"]
    assert len(_cases(web_app)) == 1
    page = c.get(link)
    assert "releve-novembre.pdf" in page.text


def test_a_status_page_post_without_csrf_is_403(web_app: App, tmp_path: Path) -> None:
    link = _status_link(web_app, tmp_path)
    c = client(web_app)
    csrf(c, link)
    r = c.post(link + "/documents", data={"text": "x"}, files=[("files", ("a.pdf", b"%PDF", "application/pdf"))])
    assert r.status_code == 403


def test_once_answered_the_customer_can_ask_for_a_re_examination(web_app: App, tmp_path: Path) -> None:
    link = _status_link(web_app, tmp_path)
    with db.session_scope(web_app.engine) as s:
        case = lock(s, s.exec(select(Case)).one())
        case.status, case.answered_at = "answered", web_app.now()
        s.add(case)
    c = client(web_app)
    page = c.get(link)
    assert "Demander un réexamen" in page.text and "Envoyer d'autres documents" not in page.text
    token = csrf(c, link)
    r = c.post(link + "/reexamination", data={"csrf": token, "text": "Je conteste la réponse reçue."})
    assert r.status_code == 303
    [case] = _cases(web_app)
    assert case.status == "reexamination"
    assert "En réexamen" in c.get(link).text


def test_html_and_script_from_the_customer_are_shown_inert(web_app: App, tmp_path: Path) -> None:
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    link = _status_link(web_app, tmp_path, name=f"Eve {evil}", subject=f"Sujet {evil}",
                        description=f"Texte {evil} suffisamment long")
    page = client(web_app).get(link).text
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# -- the intake API ---------------------------------------------------------------------------

API_BODY = {"name": "Jean Martin", "email": "jean@example.org", "subject": "Prélèvement contesté",
            "description": "Un prélèvement de 49,90 EUR du 2 novembre que je n'ai pas autorisé.",
            "operation_type": "prelevement", "amount": "49.90", "fact_date": "2026-11-02",
            "files": [{"filename": "avis.pdf", "content_type": "application/pdf",
                       "content_base64": base64.b64encode(b"%PDF-1.4 avis").decode()}]}


def test_the_api_without_its_key_is_401(web_app: App) -> None:
    c = client(web_app)
    assert c.post("/api/v1/complaints", json=API_BODY).status_code == 401
    assert c.post("/api/v1/complaints", json=API_BODY, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert c.get("/api/v1/complaints/KP-2026-000001").status_code == 401
    assert _cases(web_app) == []


def test_the_api_files_a_complaint_like_a_mail_and_reads_its_status(web_app: App, tmp_path: Path) -> None:
    c = client(web_app)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    r = c.post("/api/v1/complaints", json=API_BODY, headers=auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["ref"] == "KP-2026-000001" and body["channel"] == "form" and body["status"] == "acknowledged"
    assert body["status_url"].startswith(BASE + "/status/KP-2026-000001/")
    assert c.get(body["status_url"].removeprefix(BASE)).status_code == 200
    got = c.get("/api/v1/complaints/KP-2026-000001", headers={"X-API-Key": API_KEY}).json()
    assert got["due_at"] == body["due_at"]
    [case] = _cases(web_app)
    assert case.extracted["operation_types"] == ["prelevement"]
    assert any("jean@example.org" in m["To"] for m in sent_mails(web_app, tmp_path / "sent"))


def test_an_api_retry_with_the_same_idempotency_key_records_one_case(web_app: App) -> None:
    c = client(web_app)
    headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "order-42"}
    first = c.post("/api/v1/complaints", json=API_BODY, headers=headers)
    again = c.post("/api/v1/complaints", json=API_BODY, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["ref"] == again.json()["ref"] and len(_cases(web_app)) == 1


def test_the_api_never_reaches_another_brands_case(web_app: App) -> None:
    assert post_complaint(client(web_app), brand="divikeys").status_code == 303
    r = client(web_app).get("/api/v1/complaints/DK-2026-000001", headers={"X-API-Key": API_KEY})
    assert r.status_code == 404


def test_the_api_answers_invalid_fields_with_422_and_names_them(web_app: App) -> None:
    r = client(web_app).post("/api/v1/complaints", json={**API_BODY, "email": "nope", "amount": "beaucoup"},
                             headers={"X-API-Key": API_KEY})
    assert r.status_code == 422
    assert r.json()["errors"] == {"email": "bad_email", "amount": "bad_amount"}


def test_the_openapi_document_is_served(web_app: App) -> None:
    doc = client(web_app).get("/api/v1/openapi.json").json()
    assert {"/api/v1/complaints", "/api/v1/complaints/{ref}"} <= set(doc["paths"])
    assert not any(p.startswith(("/staff", "/status", "/complaint/")) for p in doc["paths"])


def test_an_api_client_of_an_unknown_brand_is_a_config_error(tmp_path: Path) -> None:
    data = config_data(tmp_path, web={"api_clients": [{"brand": "nope", "name": "x", "key_sha256": "0" * 64}]})
    with pytest.raises(Exception, match=r"web.api_clients\[0\].brand: unknown brand"):
        parse_config(data)


# -- the database down ---------------------------------------------------------------------------

def _down(app: App) -> App:
    """The same application with its database gone (nothing listens on port 9)."""
    return App(config=app.config, clock=app.clock,
               engine=db.make_engine("postgresql+psycopg://postgres@127.0.0.1:9/test?connect_timeout=2"))


def test_the_database_down_gives_503_and_the_form_keeps_what_was_typed(web_app: App) -> None:
    c = client(_down(web_app))
    form = c.get("/complaint/kalra-plus")
    assert form.status_code == 200  # the form itself needs no database
    r = post_complaint(c, subject="Carte bloquée à l'étranger", references="CB-7781")
    assert r.status_code == 503
    assert "Rien n&#39;a été perdu" in r.text
    assert 'value="Carte bloquée à l&#39;étranger"' in r.text and 'value="CB-7781"' in r.text
    assert "Mon virement de 1 250,00 EUR" in r.text
    status = c.get("/status/KP-2026-000001/0123")
    assert status.status_code == 503 and "momentanément indisponible" in status.text
    api = c.post("/api/v1/complaints", json=API_BODY, headers={"X-API-Key": API_KEY})
    assert api.status_code == 503 and api.headers["retry-after"] == "60"
