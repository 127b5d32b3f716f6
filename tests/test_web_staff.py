"""The staff console over HTTP: sign-in by a single-use mailed link, sessions in the
database, brands kept apart, the dashboard."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.models import Outbox, WebSession
from tests.conftest import Clock
from tests.webtools import BASE, WEB, client, csrf, link_in, post_complaint, sent_mails

SUPERVISOR = "supervisor@kalra-plus.com"
DK_AGENT = "agent@divikeys.com"


@pytest.fixture
def web_app(make_app: Callable[..., App]) -> App:
    return make_app(web=WEB)


def request_link(c: TestClient, address: str) -> int:
    token = csrf(c, "/staff/signin")
    return c.post("/staff/signin", data={"csrf": token, "email": address}).status_code


def mailed_link(app: App, tmp_path: Path, address: str) -> str:
    mails = sent_mails(app, tmp_path / "sent")
    return link_in(mails, re.escape(BASE) + r"/staff/signin/\S+",
                   where=lambda m: m["To"].addresses[0].addr_spec == address).removeprefix(BASE)


def sign_in(app: App, tmp_path: Path, address: str) -> TestClient:
    c = client(app)
    assert request_link(c, address) == 200
    link = mailed_link(app, tmp_path, address)
    token = csrf(c, link)
    r = c.post(link, data={"csrf": token})
    assert r.status_code == 303, r.text
    return c


def test_a_staff_member_signs_in_from_the_mailed_link(web_app: App, tmp_path: Path) -> None:
    c = client(web_app)
    assert request_link(c, SUPERVISOR.upper()) == 200
    [mail] = [m for m in sent_mails(web_app, tmp_path / "sent") if m["To"].addresses[0].addr_spec == SUPERVISOR]
    assert mail["From"].addresses[0].addr_spec == "support@kalra-plus.com"
    assert "connexion" in mail["Subject"] and mail["Auto-Submitted"] == "auto-generated"
    link = mailed_link(web_app, tmp_path, SUPERVISOR)
    confirm = c.get(link)  # opening it (or a mail scanner opening it) spends nothing
    assert confirm.status_code == 200 and SUPERVISOR in confirm.text
    r = c.post(link, data={"csrf": csrf(c, link)})
    assert r.status_code == 303 and r.headers["location"] == "/staff/"
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith("mb_staff=")][0]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert c.get("/staff/", follow_redirects=True).status_code == 200
    assert "Tableau de bord" in c.get("/staff/dashboard").text
    with db.read_scope(web_app.engine) as s:
        [row] = s.exec(select(WebSession)).all()
        assert row.agent == SUPERVISOR and row.id not in cookie  # only the token's hash is stored


def test_a_sign_in_link_works_once(web_app: App, tmp_path: Path) -> None:
    sign_in(web_app, tmp_path, SUPERVISOR)
    link = mailed_link(web_app, tmp_path, SUPERVISOR)
    other = client(web_app)
    assert other.get(link).status_code == 403
    r = other.post(link, data={"csrf": csrf(other, "/staff/signin")})
    assert r.status_code == 403 and "mb_staff" not in r.headers.get("set-cookie", "")


def test_an_expired_or_altered_sign_in_link_is_refused(web_app: App, tmp_path: Path, clock: Clock) -> None:
    c = client(web_app)
    request_link(c, SUPERVISOR)
    link = mailed_link(web_app, tmp_path, SUPERVISOR)
    who, nonce, exp, sig = link.rsplit("/", 1)[1].split(".")
    forged = f"/staff/signin/{who}.{nonce}.{int(exp) + 3600}.{sig}"
    assert c.post(forged, data={"csrf": csrf(c, "/staff/signin")}).status_code == 403
    clock.now += timedelta(minutes=16)
    assert c.get(link).status_code == 403
    assert c.post(link, data={"csrf": csrf(c, "/staff/signin")}).status_code == 403


def test_an_unknown_address_gets_the_same_answer_and_no_mail(web_app: App) -> None:
    c = client(web_app)
    token = csrf(c, "/staff/signin")
    staff = c.post("/staff/signin", data={"csrf": token, "email": SUPERVISOR}).text
    stranger = c.post("/staff/signin", data={"csrf": token, "email": "eve@example.org"}).text
    assert staff == stranger
    with db.read_scope(web_app.engine) as s:
        assert [r.to_addr for r in s.exec(select(Outbox))] == [SUPERVISOR]


def test_sign_in_links_are_rate_limited_per_address(web_app: App) -> None:
    c = client(web_app)
    for _ in range(8):
        request_link(c, SUPERVISOR)
    with db.read_scope(web_app.engine) as s:
        assert len(s.exec(select(Outbox).where(Outbox.kind == "staff_signin")).all()) == 5


def test_a_staff_post_without_csrf_is_403(web_app: App, tmp_path: Path) -> None:
    c = sign_in(web_app, tmp_path, SUPERVISOR)
    assert c.post("/staff/signin", data={"email": SUPERVISOR}).status_code == 403
    assert c.post("/staff/signout", data={}).status_code == 403
    assert c.get("/staff/dashboard").status_code == 200  # still signed in


def test_pages_without_a_session_send_to_the_sign_in_page(web_app: App) -> None:
    c = client(web_app)
    r = c.get("/staff/dashboard")
    assert r.status_code == 303 and r.headers["location"] == "/staff/signin"
    c.cookies.set("mb_staff", "forged-token")
    assert c.get("/staff/dashboard").status_code == 303


def test_signing_out_ends_the_session_everywhere(web_app: App, tmp_path: Path) -> None:
    c = sign_in(web_app, tmp_path, SUPERVISOR)
    stolen = client(web_app)
    stolen.cookies.set("mb_staff", c.cookies.get("mb_staff"))
    assert stolen.get("/staff/dashboard").status_code == 200
    assert c.post("/staff/signout", data={"csrf": csrf(c, "/staff/dashboard")}).status_code == 303
    assert stolen.get("/staff/dashboard").status_code == 303


def test_a_session_expires(web_app: App, tmp_path: Path, clock: Clock) -> None:
    c = sign_in(web_app, tmp_path, SUPERVISOR)
    clock.now += timedelta(hours=12, minutes=1)
    assert c.get("/staff/dashboard").status_code == 303


def test_the_session_cookie_is_secure_over_tls(make_app: Callable[..., App], tmp_path: Path) -> None:
    app = make_app(web={**WEB, "public_url": "https://reclamations.example.com"})
    c = client(app)
    request_link(c, SUPERVISOR)
    mails = sent_mails(app, tmp_path / "sent")
    link = link_in(mails, r"https://reclamations\.example\.com/staff/signin/\S+")
    path = link.removeprefix("https://reclamations.example.com")
    r = c.post(path, data={"csrf": csrf(c, path)})
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith("mb_staff=")][0]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_the_dashboard_counts_a_supervisors_brands_only(web_app: App, tmp_path: Path, clock: Clock) -> None:
    for i in range(3):
        assert post_complaint(client(web_app), email=f"c{i}@example.org").status_code == 303
    assert post_complaint(client(web_app), brand="divikeys").status_code == 303
    c = sign_in(web_app, tmp_path, SUPERVISOR)
    page = c.get("/staff/dashboard").text
    assert re.search(r'id="open-kalra-plus"><a [^>]*>3<', page)
    assert "open-divikeys" not in page and "<svg" in page
    assert re.search(r"<text[^>]*>&lt; 1 h</text><rect[^>]*/><text[^>]*>3</text>", page)  # 3 acknowledged at once
    assert "&lt; 1 sem.</text>" in page and "&lt; 1 wk</text>" in c.get("/staff/dashboard?lang=en").text


def test_an_agent_has_no_dashboard(web_app: App, tmp_path: Path) -> None:
    c = sign_in(web_app, tmp_path, DK_AGENT)
    assert c.get("/staff/dashboard").status_code == 404


def test_the_dashboard_counts_are_live_and_its_charts_at_most_five_minutes_old(
        web_app: App, tmp_path: Path, clock: Clock) -> None:
    c = sign_in(web_app, tmp_path, SUPERVISOR)
    assert post_complaint(client(web_app)).status_code == 303
    assert re.search(r'id="open-kalra-plus"><a [^>]*>1<', c.get("/staff/dashboard").text)
    assert post_complaint(client(web_app), email="deux@example.org").status_code == 303
    page = c.get("/staff/dashboard").text
    assert re.search(r'id="open-kalra-plus"><a [^>]*>2<', page)  # counts: live
    assert re.search(r"&lt; 1 h</text><rect[^>]*/><text[^>]*>1</text>", page)  # chart: as computed
    clock.now += timedelta(minutes=6)
    page = c.get("/staff/dashboard").text
    assert re.search(r"&lt; 1 h</text><rect[^>]*/><text[^>]*>2</text>", page)
