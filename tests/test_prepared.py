"""Prepared INSERTs on the DBAPI cursor store exactly what SQLAlchemy stores, and fail the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from mailbot import blobs, db
from mailbot.app import App
from mailbot.models import Blob, Inbound
from mailbot.prepared import Prepared, _fast_equivalent, _sqlite_utc_text

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


def test_utc_datetimes_are_bound_on_sqlite_as_sqlalchemy_binds_them() -> None:
    """The shortcut for SQLModel's UTCDateTime on SQLite (see mailbot.prepared) gives
    SQLAlchemy's text for every kind of value, and refuses what it refuses."""
    dialect = sqlite.dialect()
    column = Inbound.__table__.c.received_at  # type: ignore[attr-defined]
    slow = column.type._cached_bind_processor(dialect)  # noqa: SLF001 - what a compiled INSERT uses
    assert _fast_equivalent(column.type, dialect) is _sqlite_utc_text
    assert _fast_equivalent(column.type, postgresql.dialect()) is None  # psycopg binds datetimes itself
    zones = [UTC, ZoneInfo("Europe/Paris"), ZoneInfo("America/St_Johns"), ZoneInfo("Asia/Kolkata"),
             ZoneInfo("Pacific/Kiritimati")]
    values = [None, datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)]
    for zone in zones:
        for month, hour, micro in [(1, 0, 0), (3, 2, 1), (3, 3, 999999), (6, 12, 500000), (10, 2, 7), (12, 23, 10)]:
            values.append(datetime(2026, month, 29 if month == 3 else 25, hour, 30, 15, micro, tzinfo=zone))
    for value in values:
        assert _sqlite_utc_text(value) == slow(value), value
    naive = datetime(2026, 11, 23, 9, 30)
    with pytest.raises(ValueError, match="timezone information") as fast_err:
        _sqlite_utc_text(naive)
    with pytest.raises(ValueError) as slow_err:
        slow(naive)
    assert str(fast_err.value) == str(slow_err.value)
