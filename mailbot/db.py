"""Database engine, sessions and migrations (SQLite by default, PostgreSQL to scale out)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from mailbot import filemodes
from mailbot.prepared import Prepared

MIGRATIONS = Path(__file__).with_name("migrations")

# Errors that mean "the database is not available now": callers answer
# "retry later" (SMTP 451, sysexit 75, IMAP leaves the mail in place).
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (OperationalError, DBAPIError)


# PostgreSQL's DETAIL line of an error holds values: "Failing row contains (…the whole row…)",
# "Key (reply_token)=(…) already exists". Statements' parameters are hidden by the engine
# (`hide_parameters`); this hides those lines wherever an error's text is logged or kept.
_DETAIL = re.compile(r"^DETAIL:[^\n]*", re.MULTILINE)


def without_values(text: str) -> str:
    """An error's text (or a traceback) without the values a database put in it."""
    return _DETAIL.sub("DETAIL: (not shown: it holds values)", text)


def _sqlite_pragmas(busy_timeout: float):  # type: ignore[no-untyped-def]
    def on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN IMMEDIATE
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, not only a crash
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.close()

    return on_connect


def _sqlite_begin_immediate(conn) -> None:  # type: ignore[no-untyped-def]
    """Take the write lock when the transaction starts: a read transaction that later
    writes could otherwise fail at once with SQLITE_BUSY under concurrency. Except in
    `read_scope`, which never writes."""
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")


_READ_ONLY = "mailbot_read_only"


def make_engine(url: str, busy_timeout: float = 10.0) -> Engine:
    """An engine with the pragmas/options mailbot relies on.

    `busy_timeout` (seconds, `database.busy_timeout`): how long a SQLite writer
    waits for another one's lock before the caller answers "retry later".

    `hide_parameters`: an error's text (logged with its traceback, kept as a quarantine
    reason) names the statement, never its values — customers' addresses, names, text."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1].split("?", 1)[0]
        if "///" in url and path and path != ":memory:":
            filemodes.private_sqlite(Path(path))  # 0600, and so its -wal and -shm
        engine = create_engine(url, connect_args={"timeout": busy_timeout, "check_same_thread": False},
                               hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, hide_parameters=True)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error.

    On SQLite the transactions of this process take turns through one lock (a
    reentrant `threading.RLock`, so a nested scope in the same thread goes through;
    not FIFO: the waiter that gets it next is whichever the OS wakes): SQLite's own
    busy handler sleeps in steps and is unfair (a waiting writer may sleep until
    the busy timeout while others get in), which made SMTP tail latency spike."""
    lock = _writer_lock(engine)
    with lock, Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def read_scope(engine: Engine) -> Iterator[Session]:
    """A transaction that only reads, always rolled back. On SQLite it takes no write
    lock (a plain BEGIN: in WAL mode it neither waits for the writer nor holds it up)
    and does not queue behind this process's writers. The objects read stay readable
    after it (closed, not rolled back: a rollback would expire them)."""
    with Session(engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False) as session:
        try:
            yield session
        finally:
            session.close()  # ends the transaction (a rollback of nothing) and detaches the objects


_BATCHED = "mailbot_batched_rows"


def write(session: Session, stmt: Prepared, params: dict[str, Any]) -> None:
    """Execute a statement for one row in the session's transaction: now, or — inside
    `batched_writes` — at the end of the block, with the other rows of the same
    statement in one executemany. For rows nothing reads back before the commit:
    audit events, outbox rows, records of sent mail, the outcome of an inbound row."""
    rows: dict[Prepared, list[dict[str, Any]]] | None = session.info.get(_BATCHED)
    if rows is None:
        stmt.scalar(session, params)
    else:
        rows.setdefault(stmt, []).append(params)


def _write_batched(session: Session) -> None:
    rows = session.info.get(_BATCHED)
    if rows:
        conn = session.connection()
        for stmt, params in list(rows.items()):  # in the order the statements were first used
            stmt.executemany(conn, params)
        rows.clear()


@contextmanager
def batched_writes(session: Session) -> Iterator[None]:
    """`write` keeps its rows until the block ends, then writes them (before the commit)."""
    session.info[_BATCHED] = {}
    try:
        yield
        _write_batched(session)
    finally:
        session.info.pop(_BATCHED, None)


@contextmanager
def writes_now(session: Session) -> Iterator[None]:
    """Inside `batched_writes`: what is kept is written, and `write` executes at once
    within the block (for code that uses a savepoint, which could roll back rows kept)."""
    rows = session.info.get(_BATCHED)
    if rows is None:
        yield
        return
    _write_batched(session)
    session.info.pop(_BATCHED)
    try:
        yield
    finally:
        session.info[_BATCHED] = rows


_LOCKS: dict[int, threading.RLock] = {}


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _writer_lock(engine: Engine) -> threading.RLock | _NoLock:
    """Reentrant, so a nested scope in the same thread cannot deadlock on it."""
    if engine.dialect.name != "sqlite":
        return _NoLock()
    return _LOCKS.setdefault(id(engine), threading.RLock())


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` (idempotent)."""
    _migrate(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to `revision` (what `upgrade` did after it is undone)."""
    _migrate(engine, command.downgrade, revision)


def _migrate(engine: Engine, step: Callable[[AlembicConfig, str], None], revision: str) -> None:
    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Serialise concurrent upgrades of several instances.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242001)")
        cfg.attributes["connection"] = conn
        step(cfg, revision)


SEARCH_TABLES = ("messages_fts", "cases_fts", "search_deferral", "search_pending")  # SQLite FTS5 tables of 0007,
# the deferral tables of 0014 (no model)
SEARCH_INDEXES = ("ix_messages_search", "ix_cases_search")  # their PostgreSQL GIN indexes


def mapped_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's `include_name`: False for the schema objects the models do not describe on
    purpose (full-text search: SQLite's FTS5 tables with their shadow tables, PostgreSQL's
    expression indexes; migration 0007 keeps them)."""
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith(SEARCH_TABLES)
    return not (type_ == "index" and name in SEARCH_INDEXES)
