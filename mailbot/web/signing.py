"""Signed values of the web side: CSRF tokens, staff sign-in links, session tokens.

Every signature is an HMAC-SHA256 keyed with the web secret (`[web]`, never a
default) over a purpose label, so a value signed for one use is worthless for
another. Nothing here touches the database or keeps state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime


def sign(secret: str, purpose: str, *parts: str) -> str:
    msg = "|".join((purpose, *parts)).encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()[:40]


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def digest(token: str) -> str:
    """How a bearer token is stored: its sha256 (a database dump gives no session)."""
    return hashlib.sha256(token.encode()).hexdigest()


# -- CSRF: a signed double-submit token -------------------------------------------
# The browser holds a random nonce in an HttpOnly, SameSite=Strict cookie; every form
# carries sign(nonce). A forged cross-site post has neither the cookie (SameSite)
# nor a way to compute the field.

def csrf_field(secret: str, nonce: str) -> str:
    return sign(secret, "csrf", nonce)


def csrf_ok(secret: str, nonce: str | None, field: str | None) -> bool:
    return bool(nonce and field) and hmac.compare_digest(csrf_field(secret, nonce or ""), field or "")


# -- Staff sign-in links ---------------------------------------------------------

@dataclass(frozen=True)
class SigninLink:
    agent: str
    nonce: str
    expires: datetime


def make_signin_token(secret: str, agent: str, expires: datetime) -> str:
    """`<agent, base64url>.<nonce>.<expiry, unix seconds>.<signature>`."""
    who = base64.urlsafe_b64encode(agent.lower().encode()).decode().rstrip("=")
    nonce = new_nonce().replace(".", "_")
    exp = str(int(expires.timestamp()))
    return f"{who}.{nonce}.{exp}.{sign(secret, 'signin', who, nonce, exp)}"


def read_signin_token(secret: str, token: str, now: datetime) -> SigninLink | str:
    """The link's content, or why it is refused (expiry and signature; single use is
    the caller's: it records the nonce)."""
    parts = (token or "").split(".")
    if len(parts) != 4:
        return "malformed"
    who, nonce, exp, sig = parts
    if not hmac.compare_digest(sign(secret, "signin", who, nonce, exp), sig):
        return "bad signature"
    try:
        agent = base64.urlsafe_b64decode(who + "=" * (-len(who) % 4)).decode()
        expires = datetime.fromtimestamp(int(exp), UTC)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        return "malformed"
    if now >= expires:
        return "expired"
    return SigninLink(agent, nonce, expires)
