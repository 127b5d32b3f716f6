"""Prepared INSERTs on the DBAPI cursor store exactly what SQLAlchemy stores, and fail the same way."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from mailbot import blobs, db
from mailbot.app import App
from mailbot.models import Blob, Inbound
from mailbot.prepared import Prepared

ROW = {
    "dedupe_key": "k1", "message_id": "<m@example.org>", "sha256": "a" * 64, "source": "test",
    "envelope_from": None, "envelope_to": ["support@kalra-plus.com", "Zoé <z@example.org>"],
    "outcome": "case", "reason": "r\u00e9sum\u00e9 \U0001f600",
    "received_at": datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=UTC),
}


def _put_blob(app: App) -> None:
    with db.session_scope(app.engine) as s:
        blobs.put(s, b"raw", "a" * 64)


def test_a_prepared_insert_stores_what_sqlalchemy_stores(app: App) -> None:
    _put_blob(app)
    prepared = Prepared(insert(Inbound).returning(Inbound.id))
    with db.session_scope(app.engine) as s:
        fast_id = prepared.scalar(s, ROW)
        slow_id = s.connection().execute(insert(Inbound).returning(Inbound.id),
                                         {**ROW, "dedupe_key": "k2"}).scalar_one()
    assert isinstance(fast_id, int) and slow_id == fast_id + 1
    with db.session_scope(app.engine) as s:
        fast, slow = s.get(Inbound, fast_id), s.get(Inbound, slow_id)
        assert fast is not None and slow is not None
        got = fast.model_dump(exclude={"id", "dedupe_key"})
        assert got == slow.model_dump(exclude={"id", "dedupe_key"})
        assert got["received_at"] == ROW["received_at"] and got["envelope_to"] == ROW["envelope_to"]
        assert got["reason"] == ROW["reason"]


def test_a_left_out_column_with_a_python_default_gets_its_default(app: App) -> None:
    """Then SQLAlchemy's own path runs, which fills in `received_at` and `reason`."""
    _put_blob(app)
    prepared = Prepared(insert(Inbound).returning(Inbound.id))
    row = {k: v for k, v in ROW.items() if k not in ("received_at", "reason")}
    before = datetime.now(UTC)
    with db.session_scope(app.engine) as s:
        new_id = prepared.scalar(s, row)
    with db.session_scope(app.engine) as s:
        stored = s.get(Inbound, new_id)
        assert stored is not None and stored.reason == "" and stored.received_at >= before


def test_a_constraint_violation_is_sqlalchemys_integrity_error_and_rolls_back(app: App) -> None:
    _put_blob(app)
    prepared = Prepared(insert(Inbound).returning(Inbound.id))
    with db.session_scope(app.engine) as s:
        prepared.scalar(s, ROW)
    with pytest.raises(IntegrityError) as err, db.session_scope(app.engine) as s:
        blobs.put(s, b"other", "b" * 64)
        prepared.scalar(s, ROW)  # the same dedupe_key: unique
    assert err.value.orig is not None and "INSERT INTO inbound" in str(err.value)
    with db.session_scope(app.engine) as s:  # the whole transaction went: no blob "b…"
        assert s.exec(select(Blob.sha256)).all() == ["a" * 64]
        assert len(s.exec(select(Inbound)).all()) == 1
