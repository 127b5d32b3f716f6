"""Hot INSERTs executed straight on the DBAPI cursor, in the session's transaction.

Ingest runs a handful of single-row INSERTs for every mail received (raw blob,
inbound row, case, message, attachment, case counter). Through SQLAlchemy's
`Connection.execute` each one costs about twice its execution in SQLite:
compiled-cache lookup, execution context, result wrapping. `Prepared` compiles a
Core statement once per dialect and column set, keeps SQLAlchemy's own bind
processors (so values are stored exactly as SQLAlchemy would store them: dates,
JSON, TypeDecorators), and runs it on the connection's DBAPI cursor.

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
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase
from sqlmodel import Session


@dataclass(frozen=True)
class _Plan:
    sql: str
    names: tuple[str, ...]  # bind names, in the order a positional paramstyle needs
    positional: bool
    processors: Mapping[str, Callable[[Any], Any]]
    constants: Mapping[str, Any]  # binds the statement itself gives a value (e.g. values(next_seq=2))
    returning: bool

    def args(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        procs = self.processors
        values = {**self.constants, **params}
        if self.positional:
            return [procs[n](values[n]) if n in procs else values[n] for n in self.names]
        return {n: procs[n](values[n]) if n in procs else values[n] for n in self.names}


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
    processors = {n: p for n, p in compiled._bind_processors.items() if n in names}  # noqa: SLF001
    return _Plan(sql=compiled.string, names=names, positional=compiled.positional,
                 processors=processors, constants=constants, returning=bool(stmt._returning))  # noqa: SLF001


def _wrapped(conn: Connection, sql: str, params: Mapping[str, Any], exc: Exception, cursor: Any) -> DBAPIError:
    """The exception SQLAlchemy would raise for `exc`; a lost connection is invalidated."""
    dialect = conn.dialect
    disconnect = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
    if disconnect:
        conn.invalidate(exc)
    return DBAPIError.instance(sql, dict(params), exc, dialect.loaded_dbapi.Error,
                               connection_invalidated=disconnect, dialect=dialect)

