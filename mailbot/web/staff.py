"""The staff console: sign-in by mailed link, sign-out, the dashboard. Every page needs a
session (`current_staff`); a case, attachment or figure of a brand the staff member does
not serve answers 404, as if it did not exist."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mailbot import db
from mailbot.web.charts import bar_chart
from mailbot.web.dashboard import figures
from mailbot.web.http import check_csrf, ctx, error_page, page, request_language, set_cookie
from mailbot.web.i18n import words
from mailbot.web.sessions import Staff, check_link, end_session, request_link, staff_of, use_link

router = APIRouter(prefix="/staff", include_in_schema=False)

SESSION_COOKIE = "mb_staff"


class SignInRequired(Exception):
    """No valid session: the handler answers with the sign-in page."""


def current_staff(request: Request) -> Staff:
    staff = staff_of(ctx(request).app, request.cookies.get(SESSION_COOKIE))
    if staff is None:
        raise SignInRequired()
    return staff


def staff_page(request: Request, staff: Staff, name: str, context: dict, *, status: int = 200) -> HTMLResponse:
    lang = request_language(request, ctx(request).app.config.brand(staff.agent.brands[0]).language)
    return page(request, name, {"staff": staff, **context}, lang=lang, status=status)


def _signin_page(request: Request, *, sent: bool = False, refused: bool = False) -> HTMLResponse:
    lang = request_language(request)
    return page(request, "staff_signin.html", {
        "sent": sent, "problem": words(lang)["signin_bad"] if refused else "",
        "minutes": ctx(request).app.config.web.signin_minutes}, lang=lang, status=403 if refused else 200)


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request) -> HTMLResponse:
    return _signin_page(request)


@router.post("/signin", response_class=HTMLResponse)
async def signin_request(request: Request) -> HTMLResponse:
    form = await request.form(max_files=0, max_fields=10)
    check_csrf(request, form)
    wc = ctx(request)
    request_link(wc.app, wc.secret, wc.base_url, str(form.get("email") or "")[:300])
    # The same answer whether or not the address is staff: the page tells no one who works here.
    return _signin_page(request, sent=True)


@router.get("/signin/{token}", response_class=HTMLResponse)
def signin_confirm(request: Request, token: str) -> HTMLResponse:
    """Opening the link shows a button; only pressing it spends the link (a mail scanner
    that opens links does not sign anyone in, nor use the link up)."""
    wc = ctx(request)
    link = check_link(wc.app, wc.secret, token)
    if isinstance(link, str):
        return _signin_page(request, refused=True)
    return page(request, "staff_signin_confirm.html", {"agent": link.agent, "token": token},
                lang=request_language(request))


@router.post("/signin/{token}", response_class=HTMLResponse)
async def signin_use(request: Request, token: str) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    check_csrf(request, form)
    wc = ctx(request)
    used = use_link(wc.app, wc.secret, token)
    if isinstance(used, str):
        return _signin_page(request, refused=True)
    cookie, expires = used
    response = RedirectResponse("/staff/", status_code=303)
    set_cookie(request, response, SESSION_COOKIE, cookie, int((expires - wc.app.now()).total_seconds()))
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    check_csrf(request, form)
    staff = staff_of(ctx(request).app, request.cookies.get(SESSION_COOKIE))
    if staff is not None:
        end_session(ctx(request).app, staff.session_id)
    response = RedirectResponse("/staff/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    staff = current_staff(request)
    return RedirectResponse("/staff/dashboard" if staff.supervisor else "/staff/queue", status_code=303)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    staff = current_staff(request)
    if not staff.supervisor:
        return error_page(request, 404)
    app = ctx(request).app
    with db.read_scope(app.engine) as s:
        figs = figures(s, app, staff.agent.brands)
    lang = request_language(request, app.config.brand(staff.agent.brands[0]).language)
    w = words(lang)
    def bars(key: str, counts: list[tuple[str, int]]) -> list[tuple[str, int]]:
        return list(zip(w[key].split("|"), (n for _, n in counts), strict=True))

    charts = [{"f": f,
               "ack": bar_chart(f"{f.name}: {w['ack_chart']}", bars("ack_buckets", f.ack_times)),
               "answer": bar_chart(f"{f.name}: {w['answer_chart']}", bars("answer_buckets", f.answer_times),
                                   colour="#2f7d4f")}
              for f in figs]
    return staff_page(request, staff, "staff_dashboard.html", {"charts": charts})
