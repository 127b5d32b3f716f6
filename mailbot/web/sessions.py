"""Staff sign-in by a single-use mailed link, and sessions — all in the database.

1. `request_link`: for a configured staff address only (any other address gets the
   same answer and nothing is sent), a signed link valid `web.signin_minutes` is
   queued in the outbox (the one send path), at most LINKS_PER_WINDOW per address
   per window.
2. `use_link`: the signature and expiry are checked, then the link's nonce is
   recorded (`web_used_links`, primary key): a second use fails on that key, in
   whichever process it arrives. A session row is created; the browser gets its
   token in a cookie, the row keeps only the token's sha256.
3. `staff_of`: a cookie's session, if it exists, has not ended or expired, and its
   address is still a configured agent (removing an agent from config.toml ends
   their access at once).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select

from mailbot import db
from mailbot.app import App
from mailbot.config import AgentConfig
from mailbot.models import Outbox, WebSession, WebUsedLink
from mailbot.outgoing import outbox, templating
from mailbot.outgoing.compose import Outgoing, build, new_message_id
from mailbot.outgoing.templating import brand_context
from mailbot.web import signing

LINKS_PER_WINDOW = 5
LINK_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class Staff:
    agent: AgentConfig
    session_id: str

    @property
    def email(self) -> str:
        return self.agent.email

    @property
    def supervisor(self) -> bool:
        return self.agent.role in ("supervisor", "admin")

    def sees(self, brand: str) -> bool:
        return brand in self.agent.brands


def request_link(app: App, secret: str, base_url: str, email: str) -> bool:
    """Queue a sign-in link to `email` if it is a staff address; True when queued."""
    agent = app.config.agent(email.strip())
    if agent is None:
        return False
    now = app.now()
    expires = now + timedelta(minutes=app.config.web.signin_minutes)
    url = f"{base_url}/staff/signin/{signing.make_signin_token(secret, agent.email, expires)}"
    brand = app.config.brand(agent.brands[0])
    ctx = {"brand": brand_context(brand),
           "agent": {"name": agent.name, "email": agent.email},
           "signin": {"url": url, "minutes": app.config.web.signin_minutes,
                      "expires_at": app.calendar(brand).local(expires).isoformat(), "zone": brand.timezone}}
    rendered = templating.renderer(app).render(brand.key, brand.language, "staff_signin", ctx)
    mid = new_message_id(brand.addresses[0])
    raw = build(Outgoing(from_addr=brand.addresses[0], from_name=brand.name, to_addr=agent.email,
                         to_name=agent.name, subject=rendered.subject, text=rendered.text, html=rendered.html,
                         message_id=mid, auto_submitted="auto-generated"), now)
    with db.session_scope(app.engine) as s:
        recent = s.exec(select(func.count()).select_from(Outbox).where(
            Outbox.to_addr == agent.email, Outbox.kind == "staff_signin",
            col(Outbox.created_at) > now - LINK_WINDOW)).one()
        if recent >= LINKS_PER_WINDOW:
            return False
        outbox.queue(s, case=None, kind="staff_signin", from_addr=brand.addresses[0], to_addr=agent.email,
                     message_id=mid, now=now, raw=raw, to_name=agent.name, language=brand.language)
    return True


def check_link(app: App, secret: str, token: str) -> signing.SigninLink | str:
    """What a link says, or why it is refused (not recorded: showing the confirmation
    page does not use it up, so a mail scanner opening links spends nothing)."""
    link = signing.read_signin_token(secret, token, app.now())
    if isinstance(link, str):
        return link
    if app.config.agent(link.agent) is None:
        return "not a staff address"
    with db.read_scope(app.engine) as s:
        if s.get(WebUsedLink, link.nonce) is not None:
            return "already used"
    return link


def use_link(app: App, secret: str, token: str) -> tuple[str, datetime] | str:
    """Spend the link and open a session: (cookie token, expiry), or why it is refused."""
    link = check_link(app, secret, token)
    if isinstance(link, str):
        return link
    now = app.now()
    cookie = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=app.config.web.session_hours)
    try:
        with db.session_scope(app.engine) as s:
            s.add(WebUsedLink(nonce=link.nonce, agent=link.agent, used_at=now))
            s.flush()
            s.add(WebSession(id=signing.digest(cookie), agent=link.agent, created_at=now, expires_at=expires))
    except IntegrityError:
        return "already used"
    return cookie, expires


def staff_of(app: App, cookie: str | None) -> Staff | None:
    if not cookie:
        return None
    sid = signing.digest(cookie)
    with db.read_scope(app.engine) as s:
        row = s.get(WebSession, sid)
        s.expunge_all()
    if row is None or row.ended_at is not None or app.now() >= row.expires_at:
        return None
    agent = app.config.agent(row.agent)
    return Staff(agent, sid) if agent is not None else None


def end_session(app: App, session_id: str) -> None:
    with db.session_scope(app.engine) as s:
        row = s.get(WebSession, session_id)
        if row is not None and row.ended_at is None:
            row.ended_at = app.now()
            s.add(row)
