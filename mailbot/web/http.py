"""What every route shares: the process's context, the client's address, pages with
their CSRF token, CSRF checks, error pages. No per-user state lives here."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData

from mailbot.app import App
from mailbot.web import signing
from mailbot.web.i18n import LANGUAGES, pick_language, words
from mailbot.web.render import render_page

CSRF_COOKIE = "mb_csrf"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class WebContext:
    """What the process knows: the application (config, database, clock) and the web secret."""

    app: App
    secret: str
    base_url: str  # where links in mail point: web.public_url, else the bound address


def ctx(request: Request) -> WebContext:
    return request.app.state.mailbot  # type: ignore[no-any-return]


def client_ip(request: Request) -> str:
    """The client's address; `X-Forwarded-For` is believed only from a trusted proxy
    (`web.trusted_proxies`), and then its last untrusted hop is the client."""
    peer = request.client.host if request.client else ""
    trusted = set(ctx(request).app.config.web.trusted_proxies)
    if peer not in trusted:
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


def over_tls(request: Request) -> bool:
    """Served over TLS: the public URL says https, or a trusted proxy says so."""
    if ctx(request).app.config.web.over_tls or request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    return (peer in ctx(request).app.config.web.trusted_proxies
            and request.headers.get("x-forwarded-proto") == "https")


def set_cookie(request: Request, response: HTMLResponse, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict",
                        secure=over_tls(request), path="/")


def page(request: Request, name: str, context: dict[str, Any], *, lang: str, status: int = 200,
         headers: dict[str, str] | None = None) -> HTMLResponse:
    """A page, with the CSRF field its forms carry (and the cookie it pairs with)."""
    c = ctx(request)
    nonce = request.cookies.get(CSRF_COOKIE) or ""
    fresh = len(nonce) < 20
    if fresh:
        nonce = signing.new_nonce()
    full = {"t": words(lang), "lang": lang, "languages": LANGUAGES, "csrf": signing.csrf_field(c.secret, nonce),
            "path": request.url.path, "staff": None, **context}
    response = HTMLResponse(render_page(name, full), status_code=status, headers=headers)
    if fresh:
        set_cookie(request, response, CSRF_COOKIE, nonce, None)
    return response


def check_csrf(request: Request, form: FormData) -> None:
    """403 unless the form carries the token that pairs with the browser's cookie."""
    field = form.get(CSRF_FIELD)
    if not signing.csrf_ok(ctx(request).secret, request.cookies.get(CSRF_COOKIE),
                           field if isinstance(field, str) else None):
        raise HTTPException(403, "missing or wrong CSRF token")


def request_language(request: Request, default: str = "fr") -> str:
    return pick_language(request.query_params.get("lang"), default)


def error_page(request: Request, status: int, lang: str | None = None, **values: Any) -> HTMLResponse:
    lang = lang or request_language(request)
    w = words(lang)
    max_mb = ctx(request).app.config.web.max_request_size // (1024 * 1024)
    title = w.get(f"err_title_{status}", str(status))
    body = w.get(f"err_body_{status}", "").format(max_mb=max_mb, **values)
    return page(request, "error.html", {"title": title, "body": body, "status": status},
                lang=lang, status=status)
