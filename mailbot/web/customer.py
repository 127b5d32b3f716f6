"""The customer's pages: the complaint form of each brand, and the status page of a
case reached by the signed link of its mails (no account)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import col, select
from starlette.datastructures import FormData, UploadFile

from mailbot import db
from mailbot.config import BrandConfig
from mailbot.ingest.pipeline import TemporaryFailure
from mailbot.models import Attachment, Case, Message
from mailbot.outgoing.links import status_path, status_signature_ok
from mailbot.web.http import check_csrf, client_ip, ctx, error_page, page, request_language
from mailbot.web.i18n import pick_language, words
from mailbot.web.intake import (
    OPERATION_TYPES,
    Complaint,
    Upload,
    files_problem,
    from_fields,
    validate,
)
from mailbot.web.submissions import RateLimited, file_complaint, file_follow_up

router = APIRouter(include_in_schema=False)

HONEYPOT = "website"
CUSTOMER_KINDS_IN = ("customer",)  # what the customer sees of the mails received: their own
REEXAMINABLE = ("answered", "closed")


async def read_uploads(form: FormData) -> list[Upload]:
    files = []
    for item in form.getlist("files"):
        if isinstance(item, UploadFile) and item.filename:
            files.append(Upload(item.filename, item.content_type or "application/octet-stream", await item.read()))
    return files


async def read_form(request: Request) -> FormData:
    web = ctx(request).app.config.web
    return await request.form(max_files=web.max_files + 1, max_fields=100, max_part_size=web.max_request_size)


def _brand(request: Request, key: str) -> BrandConfig | None:
    try:
        return ctx(request).app.config.brand(key)
    except KeyError:
        return None


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    lang = request_language(request)
    return page(request, "index.html", {"brands": ctx(request).app.config.brands}, lang=lang)


def _form_page(request: Request, brand: BrandConfig, lang: str, complaint: Complaint,
               errors: dict[str, str], *, status: int = 200, banner: str = "") -> HTMLResponse:
    web = ctx(request).app.config.web
    return page(request, "complaint_form.html", {
        "brand": brand, "values": complaint.fields(), "errors": errors, "banner": banner,
        "operation_types": OPERATION_TYPES, "max_files": web.max_files,
        "max_mb": web.max_request_size // (1024 * 1024),
        "types": ", ".join(e.lstrip(".") for e in web.allowed_extensions),
        "accept": ",".join(web.allowed_extensions), "resubmitted": bool(errors or banner),
    }, lang=lang, status=status)


def _brand_page(request: Request, brand_key: str) -> tuple[BrandConfig, str] | HTMLResponse:
    """The brand of a form URL and the page's language (`?lang=`), or the 404 page."""
    brand = _brand(request, brand_key)
    if brand is None:
        return error_page(request, 404)
    return brand, pick_language(request.query_params.get("lang"), brand.language, brand.languages)


@router.get("/complaint/{brand_key}", response_class=HTMLResponse)
def complaint_form(request: Request, brand_key: str) -> HTMLResponse:
    found = _brand_page(request, brand_key)
    if isinstance(found, HTMLResponse):
        return found
    brand, lang = found
    return _form_page(request, brand, lang, Complaint(), {})


@router.post("/complaint/{brand_key}", response_class=HTMLResponse)
async def complaint_post(request: Request, brand_key: str) -> Response:
    brand = _brand(request, brand_key)
    if brand is None:
        return error_page(request, 404)
    form = await read_form(request)
    check_csrf(request, form)
    lang = pick_language(str(form.get("lang") or ""), brand.language, brand.languages)
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    files = await read_uploads(form)
    complaint = from_fields(values, files)
    if values.get(HONEYPOT):  # a robot: thanked, nothing recorded
        return page(request, "complaint_done.html", {"brand": brand, "ref": None}, lang=lang)
    app = ctx(request).app
    today = app.calendar(brand).local(app.now()).date()
    errors = validate(complaint, app.config, app.config.web, today)
    if errors:
        return _form_page(request, brand, lang, complaint, errors, status=422)
    try:
        filed = file_complaint(app, brand, lang, complaint, source=f"form:{client_ip(request)}",
                               ip=client_ip(request))
    except RateLimited:
        return _form_page(request, brand, lang, complaint, {}, status=429,
                          banner=words(lang)["err_body_429"])
    except (TemporaryFailure, *db.TRANSIENT_DB_ERRORS):
        return _form_page(request, brand, lang, complaint, {}, status=503,
                          banner=words(lang)["err_body_503"])
    return RedirectResponse(f"/complaint/{brand.key}/done?lang={lang}&ref={filed.ref or ''}", status_code=303)


@router.get("/complaint/{brand_key}/done", response_class=HTMLResponse)
def complaint_done(request: Request, brand_key: str) -> HTMLResponse:
    found = _brand_page(request, brand_key)
    if isinstance(found, HTMLResponse):
        return found
    brand, lang = found
    ref = request.query_params.get("ref", "")[:40]
    return page(request, "complaint_done.html", {"brand": brand, "ref": ref}, lang=lang)


# -- the status page -----------------------------------------------------------------

def _case_for_link(request: Request, ref: str, signature: str) -> Case | Response:
    """The case a status link opens, or the page that refuses it (404: no such link;
    410: the case's retention has ended)."""
    wc = ctx(request)
    with db.read_scope(wc.app.engine) as s:
        case = s.exec(select(Case).where(Case.ref == ref.upper())).first()
        s.expunge_all()  # read_scope rolls back: keep the loaded values
    if case is None or not status_signature_ok(wc.secret, case.ref, case.reply_token, signature):
        return error_page(request, 404)
    brand = wc.app.config.brand(case.brand)
    retention_end = case.closed_at + timedelta(days=365 * brand.retention_years) if case.closed_at else None
    if case.purged_at is not None or (retention_end is not None and wc.app.now() >= retention_end):
        return error_page(request, 410, lang=case.language)
    return case


def _status_context(request: Request, case: Case) -> dict[str, Any]:
    app = ctx(request).app
    with db.read_scope(app.engine) as s:
        msgs = s.exec(select(Message).where(Message.case_id == case.id).order_by(col(Message.id))).all()
        shown = [m for m in msgs if (m.direction == "in" and m.kind in CUSTOMER_KINDS_IN)
                 or (m.direction == "out" and m.body_text)]
        atts = s.exec(select(Attachment).where(col(Attachment.message_id).in_([m.id for m in shown]))).all()
        s.expunge_all()
    by_msg: dict[int, list[Attachment]] = {}
    for a in atts:
        by_msg.setdefault(a.message_id, []).append(a)
    brand = app.config.brand(case.brand)
    return {"case": case, "brand": brand, "tz": brand.timezone,
            "messages": [{"m": m, "attachments": by_msg.get(m.id or 0, [])} for m in shown],
            "can_reexamine": case.status in REEXAMINABLE,
            "action": status_path(ctx(request).secret, case.ref, case.reply_token),
            "max_files": app.config.web.max_files, "accept": ",".join(app.config.web.allowed_extensions),
            "notice": "", "errors": {}, "values": {}}


@router.get("/status/{ref}/{signature}", response_class=HTMLResponse)
def status_page(request: Request, ref: str, signature: str) -> Response:
    found = _case_for_link(request, ref, signature)
    if not isinstance(found, Case):
        return found
    lang = pick_language(request.query_params.get("lang"), found.language)
    context = _status_context(request, found)
    notice = request.query_params.get("done")
    if notice in ("added", "reexam_done"):
        context["notice"] = words(lang)[notice]
    return page(request, "status.html", context, lang=lang, headers={"Referrer-Policy": "no-referrer"})


@router.post("/status/{ref}/{signature}/{what}", response_class=HTMLResponse)
async def status_post(request: Request, ref: str, signature: str, what: str) -> Response:
    found = _case_for_link(request, ref, signature)
    if not isinstance(found, Case):
        return found
    if what not in ("documents", "reexamination"):
        return error_page(request, 404)
    form = await read_form(request)
    check_csrf(request, form)
    case = found
    lang = pick_language(str(form.get("lang") or ""), case.language)
    w = words(lang)
    text = str(form.get("text") or "").replace("\x00", "").strip()[:20_000]
    files = await read_uploads(form)
    context = _status_context(request, case)
    context["values"] = {"text": text}
    problem = files_problem(files, ctx(request).app.config.web)
    if what == "reexamination" and case.status not in REEXAMINABLE:
        problem = problem or "bad_choice"
    if what == "documents" and case.status in REEXAMINABLE:
        problem = "bad_choice"  # on an answered case, a message asks for a re-examination: say so
    if what == "documents" and not files and not text:
        problem = problem or "required"
    if what == "reexamination" and len(text) < 10:
        problem = problem or "too_short"
    if problem:
        context["errors"] = {what: w[f"err_{problem}"]}
        return page(request, "status.html", context, lang=lang, status=422)
    subject = w["reexam_subject"] if what == "reexamination" else w["documents_subject"]
    try:
        file_follow_up(ctx(request).app, case, text or subject, files, subject=subject, ip=client_ip(request))
    except RateLimited:
        context["errors"] = {what: w["err_body_429"]}
        return page(request, "status.html", context, lang=lang, status=429)
    except (TemporaryFailure, *db.TRANSIENT_DB_ERRORS):
        context["errors"] = {what: w["err_body_503"]}
        return page(request, "status.html", context, lang=lang, status=503)
    done = "reexam_done" if what == "reexamination" else "added"
    return RedirectResponse(f"{context['action']}?lang={lang}&done={done}", status_code=303)
