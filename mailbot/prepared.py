"""Hot INSERTs executed straight on the DBAPI cursor, in the session's transaction.

Ingest runs a handful of single-row INSERTs for every mail received (raw blob,
inbound row, case, message, attachment, case counter). Through SQLAlchemy's
`Connection.execute` each one costs about twice its execution in SQLite:
compiled-cache lookup, execution context, result wrapping. `Prepared` compiles a
Core statement once per dialect and column set, keeps SQLAlchemy's own bind
processors (so values are stored exactly as SQLAlchemy would store them: dates,
JSON, TypeDecorators), and runs it on the connection's DBAPI cursor. One of them
is replaced by an equivalent: on SQLite, SQLModel's `UTCDateTime` (a TypeDecorator
around SQLite's DATETIME) costs ~3 µs a value through SQLAlchemy's two layers,
and a mail binds ~25 of them; `_sqlite_utc_text` gives the same text in a
fraction of that (tests/test_prepared.py compares them value for value).

What stays the same: the statement runs on the session's connection, inside its
transaction (so after SQLite's BEGIN IMMEDIATE), and a driver error is raised as
the SQLAlchemy exception `Connection.execute` would raise (`IntegrityError`,
`OperationalError`… with `.orig`), after invalidating the connection if it was a
disconnect. A column left out that has a Python-side default would need
SQLAlchemy's default handling: such a call goes through `Connection.execute`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase
from sqlmodel import Session
from sqlmodel.sql.sqltypes import UTCDateTime


@dataclass(frozen=True)
class _Plan:
    sql: str
    steps: tuple[tuple[str, Callable[[Any], Any] | None], ...]  # bind names (in the order a
    # positional paramstyle needs), each with its bind processor, if any
    positional: bool
    constants: Mapping[str, Any]  # binds the statement itself gives a value (e.g. values(next_seq=2))
    returning: bool

    def args(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = {**self.constants, **params} if self.constants else params
        if self.positional:
            return [values[n] if p is None else p(values[n]) for n, p in self.steps]
        return {n: values[n] if p is None else p(values[n]) for n, p in self.steps}


class Prepared:
    """One INSERT (or UPDATE) statement, executed on the DBAPI cursor (see the module docstring)."""

    def __init__(self, stmt: UpdateBase) -> None:
        self.stmt = stmt
        self._plans: dict[tuple[str, frozenset[str]], _Plan | None] = {}

    def scalar(self, session: Session | Connection, params: Mapping[str, Any]) -> Any:
        """Execute for one row; the first RETURNING column of the row (None without RETURNING)."""
        conn = session if isinstance(session, Connection) else session.connection()
        plan = self._plan(conn.dialect, params)
        if plan is None:  # a Python-side default is needed: SQLAlchemy's path
            result = conn.execute(self.stmt, dict(params))
            return result.scalar_one() if self.stmt._returning else None  # noqa: SLF001
        dbapi_conn = conn.connection.dbapi_connection
        assert dbapi_conn is not None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(plan.sql, plan.args(params))
            return cursor.fetchone()[0] if plan.returning else None
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, plan.sql, params, exc, cursor) from exc
        finally:
            cursor.close()

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute for many rows (no RETURNING). On SQLite, one `executemany` on the cursor;
        elsewhere SQLAlchemy's own (on PostgreSQL it packs the rows into few statements)."""
        plan = self._plan(conn.dialect, rows[0]) if conn.dialect.name == "sqlite" else None
        if plan is None or plan.returning or any(row.keys() != rows[0].keys() for row in rows):
            conn.execute(self.stmt, [dict(row) for row in rows])
            return
        dbapi_conn = conn.connection.dbapi_connection
        assert dbapi_conn is not None
        cursor = dbapi_conn.cursor()
        try:
            cursor.executemany(plan.sql, [plan.args(row) for row in rows])
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, plan.sql, rows[0], exc, cursor) from exc
        finally:
            cursor.close()

    def _plan(self, dialect: Dialect, params: Mapping[str, Any]) -> _Plan | None:
        key = (dialect.name, frozenset(params))
        try:
            return self._plans[key]
        except KeyError:
            plan = self._plans[key] = _compile(self.stmt, dialect, params)
            return plan


def _compile(stmt: UpdateBase, dialect: Dialect, params: Mapping[str, Any]) -> _Plan | None:
    compiled = stmt.compile(dialect=dialect, column_keys=list(params))
    if compiled.insert_prefetch or compiled.update_prefetch:  # Python-side defaults SQLAlchemy computes
        return None
    given = compiled.construct_params(dict(params))
    names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(given)
    constants = {n: v for n, v in given.items() if n not in params}
    processors = compiled._bind_processors  # noqa: SLF001
    steps = tuple((n, _fast_equivalent(compiled.binds[n].type, dialect) or processors[n] if n in processors else None)
                  for n in names)
    return _Plan(sql=compiled.string, steps=steps, positional=compiled.positional,
                 constants=constants, returning=bool(stmt._returning))  # noqa: SLF001


_SQLITE_DATETIME_FORMAT = SQLITE_DATETIME._storage_format  # noqa: SLF001 - checked in _fast_equivalent


def _fast_equivalent(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """A faster processor giving exactly what SQLAlchemy's gives, where there is one."""
    if dialect.name != "sqlite" or not isinstance(type_, UTCDateTime):
        return None
    impl = type_.dialect_impl(dialect).impl_instance  # the DATETIME under the TypeDecorator
    if not isinstance(impl, SQLITE_DATETIME) or impl._storage_format != _SQLITE_DATETIME_FORMAT:  # noqa: SLF001
        return None
    return _sqlite_utc_text


def _sqlite_utc_text(value: datetime | None) -> str | None:
    """SQLModel's UTCDateTime then SQLite's DATETIME, in one step: the UTC time as
    'YYYY-MM-DD HH:MM:SS.ffffff'; a naive datetime is refused with SQLModel's error."""
    if value is None:
        return None
    if value.utcoffset() is None:
        raise ValueError("Datetime values must have timezone information. Use datetime.now(timezone.utc), "
                         "or annotate the field with NaiveDatetime for naive storage.")
    v = value.astimezone(UTC)
    # %-formatting: the fastest here, and SQLite DATETIME's own storage format
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031
        v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)


def _wrapped(conn: Connection, sql: str, params: Mapping[str, Any], exc: Exception, cursor: Any) -> DBAPIError:
    """The exception SQLAlchemy would raise for `exc`; a lost connection is invalidated."""
    dialect = conn.dialect
    disconnect = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
    if disconnect:
        conn.invalidate(exc)
    return DBAPIError.instance(sql, dict(params), exc, dialect.loaded_dbapi.Error,
                               hide_parameters=conn.engine.hide_parameters,  # as Connection.execute: no values
                               connection_invalidated=disconnect, dialect=dialect)

