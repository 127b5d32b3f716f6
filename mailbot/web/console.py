"""The staff console's work pages: the queue, search, a case with every action the mail
commands allow, and its attachments. The data comes from the agents' package functions
(mailbot.cases.queue, .search, .views, .actions); this module only checks who may see
what, records who saw what, and turns forms into those calls.

Access: a staff member sees only their brands' cases; anything else is 404, as if it
did not exist. Every view of a case and every attachment opened is an event of its
timeline (`viewed`, `attachment_opened`: bank §7, only authorised teams access a file).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select

from mailbot import caselocks, db
from mailbot.cases import actions, attachments, merging, reexamination, register
from mailbot.cases.queue import SORTS, BadFilter, QueueFilter, list_cases
from mailbot.cases.records import STATUSES, add_message, log_event
from mailbot.cases.search import search_cases
from mailbot.cases.views import attachment_bytes, case_detail
from mailbot.models import Attachment, Case
from mailbot.ops.checks import ANSWER_MAX_BUSINESS_DAYS, PAYMENT_MAX_EXCEPTIONAL
from mailbot.outgoing import templating
from mailbot.web.customer import read_uploads
from mailbot.web.http import check_csrf, ctx, error_page, request_language
from mailbot.web.i18n import words
from mailbot.web.intake import Upload
from mailbot.web.sessions import Staff
from mailbot.web.staff import current_staff, staff_page

router = APIRouter(prefix="/staff", include_in_schema=False)

PER_PAGE = 50
INLINE_TYPES = {"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain"}
OUTCOME_WORDS = {"accepted": "accepte", "partially_accepted": "partiellement accepte", "rejected": "rejete"}
# Every action of an agent's mail (mailbot.cases.agent_mail.COMMANDS), each through the same
# package function as its # command: reply (and #reply NAME), #ask, #note, #final, #extend,
# #tier, #category, #priority, #assign, #link, #merge, #reopen, #reexamine, #close.
ACTIONS = ("reply", "ask", "note", "final", "extend", "tier", "category", "priority", "assign", "link", "merge",
           "reopen", "reexamine", "close")


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name) in ("1", "on", "true")


@router.get("/queue", response_class=HTMLResponse)
def queue(request: Request) -> HTMLResponse:
    staff = current_staff(request)
    q = request.query_params
    app = ctx(request).app
    f = QueueFilter(status=q.get("status") or "open", brand=q.get("brand") or None,
                    mine=staff.email if _flag(request, "mine") else None, assignee=q.get("assignee") or None,
                    overdue=_flag(request, "overdue"), due_today=_flag(request, "due_today"),
                    brands=staff.agent.brands)
    try:
        page_no = max(1, int(q.get("page") or 1))
        if f.brand and not staff.sees(f.brand):
            raise BadFilter(f"unknown brand {f.brand!r}")
        with db.read_scope(app.engine) as s:
            result = list_cases(s, app, f, page=page_no, per_page=PER_PAGE, sort=q.get("sort") or "due")
    except (BadFilter, ValueError) as exc:
        return staff_page(request, staff, "staff_queue.html", {"result": None, "problem": str(exc), "f": f,
                                                              **_queue_choices(request, staff)}, status=400)
    return staff_page(request, staff, "staff_queue.html", {"result": result, "problem": "", "f": f,
                                                          **_queue_choices(request, staff)})


def _queue_choices(request: Request, staff: Staff) -> dict[str, Any]:
    return {"statuses": ["open", "all", *STATUSES], "sorts": SORTS, "brands": staff.agent.brands,
            "tzs": _zones(request)}


def _zones(request: Request) -> dict[str, str]:
    """Each brand's time zone: deadlines are shown in the brand's local time."""
    return {b.key: b.timezone for b in ctx(request).app.config.brands}


@router.get("/search", response_class=HTMLResponse)
def search(request: Request) -> HTMLResponse:
    staff = current_staff(request)
    app = ctx(request).app
    text = (request.query_params.get("q") or "").strip()[:200]
    result, problem = None, ""
    if text:
        try:
            page_no = max(1, int(request.query_params.get("page") or 1))
            with db.read_scope(app.engine) as s:
                result = search_cases(s, app, text, brands=list(staff.agent.brands), page=page_no,
                                      per_page=PER_PAGE)
        except (BadFilter, ValueError) as exc:
            problem = str(exc)
    return staff_page(request, staff, "staff_search.html", {"q": text, "result": result, "problem": problem,
                                                           "tzs": _zones(request)},
                      status=400 if problem else 200)


def _own_case(s: Session, staff: Staff, ref: str) -> Case | None:
    case = s.exec(select(Case).where(Case.ref == ref.upper())).first()
    return case if case is not None and staff.sees(case.brand) else None


def _case_context(request: Request, staff: Staff, s: Session, case: Case) -> dict[str, Any]:
    app = ctx(request).app
    brand = app.config.brand(case.brand)
    cap = PAYMENT_MAX_EXCEPTIONAL if brand.sla.payment_services else ANSWER_MAX_BUSINESS_DAYS
    used = brand.sla.tiers.get(case.tier, 0) + case.extended_days
    return {
        "d": case_detail(s, app, case), "brand": brand, "tz": brand.timezone,
        "agents": [a for a in app.config.agents if case.brand in a.brands],
        "tiers": brand.sla.tiers, "sections": brand.final_sections, "outcomes": list(OUTCOME_WORDS),
        "cap": {"days": cap, "used": used, "left": max(0, cap - used)},
        "categories": brand.categories, "reasons_required": brand.sla.reasons_required,
        "saved_replies": templating.renderer(app).replies(
            case.brand, templating.renderer(app).resolve_language(case.brand, case.language)),
        "related": _related(s, case), "merged": case.outcome == merging.MERGED,
        "errors": {}, "values": {}, "notice": "", "open": case.status not in ("closed",),
        "reopenable": case.status in reexamination.REOPENABLE and case.outcome != merging.MERGED,
    }


def _related(s: Session, case: Case) -> list[Case]:
    """The customer's other cases of the brand (what a merge or a link most often names)."""
    if not case.customer_email:
        return []
    return list(s.exec(select(Case).where(Case.brand == case.brand, Case.customer_email == case.customer_email,
                                          Case.id != case.id).order_by(col(Case.id).desc()).limit(20)))


@router.get("/cases/{ref}", response_class=HTMLResponse)
def case_page(request: Request, ref: str) -> HTMLResponse:
    staff = current_staff(request)
    app = ctx(request).app
    with db.session_scope(app.engine) as s:
        case = _own_case(s, staff, ref)
        if case is None:
            return error_page(request, 404)
        log_event(s, case, "viewed", actor=staff.email, at=app.now())
        context = _case_context(request, staff, s, case)
    done = request.query_params.get("done")
    if done in ACTIONS:
        context["notice"] = words(request_language(request))[f"done_{done}"]
    return staff_page(request, staff, "staff_case.html", context)


@router.get("/cases/{ref}/attachments/{n}")
def attachment(request: Request, ref: str, n: int) -> Response:
    """An attachment, shown in the browser when its type is harmless there (PDF, images,
    plain text), else downloaded; never run as a page of ours (sandboxed, no script)."""
    staff = current_staff(request)
    app = ctx(request).app
    with db.session_scope(app.engine) as s:
        case = _own_case(s, staff, ref)
        if case is None:
            return error_page(request, 404)
        found = attachment_bytes(s, app, case, n)
        if isinstance(found, str):
            return error_page(request, 404)
        view, data = found
        log_event(s, case, "attachment_opened", actor=staff.email, at=app.now(), n=n, filename=view.filename)
    inline = view.content_type in INLINE_TYPES and not _flag(request, "download")
    ascii_name = view.filename.encode("ascii", "replace").decode().replace('"', "'").replace("?", "_")
    from urllib.parse import quote

    disposition = f"{'inline' if inline else 'attachment'}; filename=\"{ascii_name}\"; " \
                  f"filename*=UTF-8''{quote(view.filename)}"
    return Response(data, media_type=view.content_type if inline else "application/octet-stream",
                    headers={"Content-Disposition": disposition,
                             "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox"})


@router.get("/register.csv")
def register_csv(request: Request) -> Response:
    """The complaint register of the supervisor's brands (`mailbot register export`'s
    columns: one line per round, kept after retention purges)."""
    staff = current_staff(request)
    if not staff.supervisor:
        return error_page(request, 404)
    app = ctx(request).app
    with db.read_scope(app.engine) as s:
        rows = [r for r in register.rows(s, app) if staff.sees(r["brand"])]
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=register.COLUMNS)
    w.writeheader()
    w.writerows(rows)
    day = app.now().date().isoformat()
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="register-{day}.csv"'})


def _final_text(form: dict[str, str], sections: list[str]) -> str:
    """One field per section -> the text `#final` reads (its headings are the French ones)."""
    lines = [f"{actions.SECTION_HEADINGS[key][0]} : {form.get(key, '').strip()}" for key in sections]
    lines.append(f"{actions.OUTCOME_HEADINGS[0]} : {OUTCOME_WORDS.get(form.get('outcome', ''), 'accepte')}")
    return "\n".join(lines) + "\n"


def _staff_files(s: Session, request: Request, staff: Staff, case: Case, action: str, text: str,
                 uploads: list[Upload]) -> list[Attachment]:
    """The files a staff member sends with a reply: kept on a message of theirs, as the
    files of an agent's mail are, and checked by the action like those."""
    if not uploads:
        return []
    msg = add_message(s, case, direction="in", kind="agent", message_id=None, subject=f"{action} (console)",
                      from_addr=staff.email, from_name=staff.agent.name, body_text=text,
                      route_signal="console", route_detail="sent from the staff console")
    attachments.store_files(s, ctx(request).app, msg, uploads)
    return attachments.of_message(s, msg.id)


def _perform(action: str, s: Session, request: Request, staff: Staff, case: Case,
             form: dict[str, str], uploads: list[Upload]) -> str:
    """Carry out `action` with the package function its # command uses; returns the
    reference of the case to show next (a merge may keep the other case)."""
    app = ctx(request).app
    who = staff.email
    text = form.get("text", "")
    about = actions.last_customer_message(s, case)
    if action in ("reply", "ask") and form.get("saved"):  # #reply NAME: the saved reply after the agent's text
        text = "\n\n".join(p.strip() for p in (text, actions.saved_reply(app, case, about, form["saved"])) if p.strip())
    files = _staff_files(s, request, staff, case, action, text, uploads) if action in ("reply", "ask", "final") else []
    if action == "merge":
        kept, _ = merging.merge(s, app, case, who, form.get("ref", ""))
        return kept.ref
    run: dict[str, Callable[[], object]] = {
        "reply": lambda: actions.reply(s, app, case, who, text, about=about, files=files),
        "ask": lambda: actions.reply(s, app, case, who, text, about=about, ask=True, files=files),
        "note": lambda: actions.note(s, app, case, who, text) if text.strip() else _refuse("#note", "empty"),
        "final": lambda: actions.final(s, app, case, who, _final_text(form, app.config.brand(case.brand)
                                                                       .final_sections), about=about, files=files),
        "extend": lambda: actions.extend(s, app, case, who, _int(form.get("days", "")), form.get("reason", "")),
        "tier": lambda: actions.set_tier(s, app, case, who, form.get("tier", ""), form.get("reason", "")),
        "category": lambda: actions.set_category(s, app, case, who, form.get("category", "")),
        "priority": lambda: actions.set_priority(s, app, case, who, form.get("priority", "")),
        "assign": lambda: actions.assign(s, app, case, who, form.get("agent", "")),
        "link": lambda: merging.link(s, app, case, who, form.get("ref", "")),
        "reopen": lambda: actions.reopen(s, app, case, who, form.get("reason", "")),
        "reexamine": lambda: _reexamine(s, request, case, who, form.get("reason", "")),
        "close": lambda: actions.close(s, app, case, who, form.get("reason", "")),
    }
    run[action]()
    return case.ref


def _reexamine(s: Session, request: Request, case: Case, who: str, reason: str) -> None:
    try:
        reexamination.by_agent(s, ctx(request).app, case, who, reason.strip())
    except reexamination.NotReopenable as exc:
        raise actions.Rejected("#reexamine", [str(exc)]) from None


def _refuse(command: str, reason: str) -> None:
    raise actions.Rejected(command, [reason])


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise actions.Rejected("#extend", [f"the number of days must be a whole number, got {value!r}"]) from None


@router.post("/cases/{ref}/{action}", response_class=HTMLResponse)
async def act(request: Request, ref: str, action: str) -> Response:
    staff = current_staff(request)
    if action not in ACTIONS:
        return error_page(request, 404)
    app = ctx(request).app
    form = await request.form(max_files=app.config.web.max_files + 1, max_fields=30,
                              max_part_size=app.config.web.max_request_size)
    check_csrf(request, form)
    values = {k: v.replace("\x00", "")[:20_000] for k, v in form.items() if isinstance(v, str)}
    uploads = await read_uploads(form)
    try:
        with db.session_scope(app.engine) as s:
            case = _own_case(s, staff, ref)
            if case is None:
                return error_page(request, 404)
            if len(uploads) > app.config.web.max_files:
                raise actions.Rejected(action, [f"at most {app.config.web.max_files} files"])
            caselocks.lock(s, case)
            shown = _perform(action, s, request, staff, case, values, uploads)
    except actions.Rejected as exc:
        with db.session_scope(app.engine) as s:
            case = _own_case(s, staff, ref)
            assert case is not None
            context = _case_context(request, staff, s, case)
        context["errors"] = {action: exc.reasons}
        context["values"] = {action: values}
        return staff_page(request, staff, "staff_case.html", context, status=422)
    return RedirectResponse(f"/staff/cases/{shown}?done={action}#top", status_code=303)


