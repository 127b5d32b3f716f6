"""The intake API (`/api/v1`): a brand's own site or customer area files complaints and
reads their status. Each client has its own key (`[[web.api_clients]]`, stored as
its sha256), which also fixes the brand: a key never reaches another brand's cases.
The OpenAPI document is served at `/api/v1/openapi.json`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import select

from mailbot import db
from mailbot.config import ApiClient
from mailbot.ingest.pipeline import TemporaryFailure
from mailbot.models import Case
from mailbot.outgoing.links import status_path
from mailbot.web.http import ctx
from mailbot.web.i18n import pick_language
from mailbot.web.intake import Upload, from_fields, validate
from mailbot.web.submissions import RateLimited, file_complaint

router = APIRouter(prefix="/api/v1", tags=["complaints"])


class FileIn(BaseModel):
    filename: str = Field(max_length=255)
    content_type: str = Field("application/octet-stream", max_length=200)
    content_base64: str


class ComplaintIn(BaseModel):
    """A complaint with the fields the procedures ask for; the brand is the API key's."""

    name: str = Field(max_length=300)
    email: str = Field(max_length=300)
    subject: str = Field(max_length=300)
    description: str = Field(max_length=20_000)
    language: str | None = Field(None, description="fr or en (default: the brand's)")
    phone: str = ""
    customer_number: str = ""
    fact_date: str = Field("", description="YYYY-MM-DD")
    operation_type: str = Field("", description="virement, paiement, prelevement, carte, retrait, investissement, autre")
    amount: str = Field("", description="e.g. 1250.00")
    currency: str = "EUR"
    references: str = ""
    steps_taken: str = ""
    files: list[FileIn] = []


class ComplaintOut(BaseModel):
    ref: str
    brand: str
    status: str
    channel: str
    received_at: datetime
    ack_due_at: datetime | None
    due_at: datetime | None
    answered_at: datetime | None
    closed_at: datetime | None
    status_url: str = Field(description="the customer's status page (signed link)")


def api_client(request: Request, authorization: Annotated[str | None, Header()] = None,
               x_api_key: Annotated[str | None, Header()] = None) -> ApiClient:
    """The client whose key the request carries (`Authorization: Bearer KEY` or `X-API-Key`)."""
    key = x_api_key or (authorization[7:] if authorization and authorization.lower().startswith("bearer ") else None)
    if key:
        digest = hashlib.sha256(key.encode()).hexdigest()
        for client in ctx(request).app.config.web.api_clients:
            if hmac.compare_digest(client.key_sha256, digest):
                return client
    raise HTTPException(401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"})


def _out(request: Request, case: Case) -> ComplaintOut:
    wc = ctx(request)
    path = status_path(wc.secret, case.ref, case.reply_token)
    return ComplaintOut(ref=case.ref, brand=case.brand, status=case.status, channel=case.channel,
                        received_at=case.received_at, ack_due_at=case.ack_due_at, due_at=case.due_at,
                        answered_at=case.answered_at, closed_at=case.closed_at,
                        status_url=(wc.app.config.web.public_url or "") + path)


def _files(files: list[FileIn]) -> list[Upload]:
    out = []
    for f in files:
        try:
            data = base64.b64decode(f.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(422, {"errors": {"files": "content_base64 is not base64"}}) from None
        out.append(Upload(f.filename, f.content_type, data))
    return out


@router.post("/complaints", status_code=201, response_model=ComplaintOut,
             responses={401: {"description": "no or unknown API key"}, 422: {"description": "invalid fields"},
                        429: {"description": "too many complaints from this address in the last hour"},
                        503: {"description": "database unavailable: nothing recorded, retry later"}})
def post_complaint(request: Request, body: ComplaintIn, client: Annotated[ApiClient, Depends(api_client)],
                   idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> ComplaintOut | JSONResponse:
    """File a complaint for the key's brand. It goes through the same path as an email
    (stored, extracted, acknowledged by mail). With an `Idempotency-Key` header, a retry
    of the same request records the complaint once and answers with the same case."""
    app = ctx(request).app
    brand = app.config.brand(client.brand)
    lang = pick_language(body.language, brand.language, brand.languages)
    complaint = from_fields(body.model_dump(exclude={"files", "language"}), _files(body.files))
    errors = validate(complaint, app.config, app.config.web, app.calendar(brand).local(app.now()).date())
    if errors:
        return JSONResponse({"errors": errors}, status_code=422)
    mid = None
    if idempotency_key:
        tag = hashlib.sha256(f"{client.brand}|{client.name}|{idempotency_key}".encode()).hexdigest()[:40]
        mid = f"<api.{tag}@{brand.addresses[0].rpartition('@')[2]}>"
    try:
        filed = file_complaint(app, brand, lang, complaint, source=f"api:{client.brand}/{client.name}",
                               ip=None, message_id=mid)
    except RateLimited:
        return JSONResponse({"detail": "too many complaints from this address in the last hour"}, 429)
    except (TemporaryFailure, *db.TRANSIENT_DB_ERRORS):
        return JSONResponse({"detail": "database unavailable, nothing recorded: retry later"}, 503,
                            headers={"Retry-After": "60"})
    ref = filed.ref or _ref_of_duplicate(request, mid)
    if ref is None:
        return JSONResponse({"detail": f"not recorded as a complaint: {filed.result.reason}"}, 422)
    return _get(request, client, ref)


def _ref_of_duplicate(request: Request, message_id: str | None) -> str | None:
    """A retried request (same Idempotency-Key): the case its first attempt opened."""
    if not message_id:
        return None
    from mailbot.models import Message

    with db.read_scope(ctx(request).app.engine) as s:
        row = s.exec(select(Case.ref).join(Message, Message.case_id == Case.id)  # type: ignore[arg-type]
                     .where(Message.message_id == message_id)).first()
    return row


def _get(request: Request, client: ApiClient, ref: str) -> ComplaintOut:
    with db.read_scope(ctx(request).app.engine) as s:
        case = s.exec(select(Case).where(Case.ref == ref.upper())).first()
        s.expunge_all()
    if case is None or case.brand != client.brand:
        raise HTTPException(404, "no such complaint")
    return _out(request, case)


@router.get("/complaints/{ref}", response_model=ComplaintOut,
            responses={401: {"description": "no or unknown API key"},
                       404: {"description": "no such complaint for this key's brand"}})
def get_complaint(request: Request, ref: str, client: Annotated[ApiClient, Depends(api_client)]) -> ComplaintOut:
    """The status of a complaint of the key's brand (another brand's reference: 404)."""
    return _get(request, client, ref)
