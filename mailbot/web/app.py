"""The ASGI application of `mailbot web` (FastAPI on Starlette, served by uvicorn).

`create_app` wires the routers (customer pages, intake API, staff console), the
body-size limit, security headers on every answer, and the error pages: the
database down gives 503 with a page that says nothing typed was lost (the form
itself re-shows what was typed, see mailbot.web.customer).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailbot import db
from mailbot.app import App
from mailbot.ingest.pipeline import TemporaryFailure
from mailbot.web import api, console, customer, staff
from mailbot.web.http import WebContext, error_page
from mailbot.web.limits import BodyLimit

STATIC = Path(__file__).with_name("static")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # a status link must never leak through a Referer
    "Cache-Control": "no-store",
}


class SecurityHeaders:
    """Pure ASGI middleware: the headers above on every answer (static files may be cached)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    if k not in headers and not (static and k == "Cache-Control"):
                        headers[k] = v
            await send(message)

        await self.app(scope, receive, with_headers)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_api(request):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    return error_page(request, exc.status_code if exc.status_code in (400, 401, 403, 404, 410, 413, 429) else 400)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if _is_api(request):
        return JSONResponse({"detail": [{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()]}, 422)
    return error_page(request, 400)


async def _database_down(request: Request, exc: Exception) -> Response:
    if _is_api(request):
        return JSONResponse({"detail": "database unavailable: retry later"}, 503, headers={"Retry-After": "60"})
    return error_page(request, 503)


async def _sign_in(request: Request, exc: Exception) -> Response:
    if request.method == "GET":
        return RedirectResponse("/staff/signin", status_code=303)
    return error_page(request, 401)


def create_app(app: App, *, secret: str, base_url: str) -> FastAPI:
    """The web application over `app` (config, database, clock)."""
    web = FastAPI(title="mailbot intake API", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/api/v1/openapi.json",
                  description="File complaints from a brand's own site and read their status. "
                              "Authenticate with `Authorization: Bearer <key>` (one key per client, "
                              "bound to one brand).")
    web.state.mailbot = WebContext(app=app, secret=secret, base_url=base_url.rstrip("/"))
    web.include_router(customer.router)
    web.include_router(api.router)
    web.include_router(staff.router)
    web.include_router(console.router)
    web.mount("/static", StaticFiles(directory=STATIC), name="static")
    web.add_exception_handler(HTTPException, _http_error)
    web.add_exception_handler(RequestValidationError, _validation_error)
    web.add_exception_handler(staff.SignInRequired, _sign_in)
    for exc in (TemporaryFailure, *db.TRANSIENT_DB_ERRORS):
        web.add_exception_handler(exc, _database_down)
    web.add_middleware(SecurityHeaders)
    web.add_middleware(BodyLimit, limit=app.config.web.max_request_size)
    return web
