"""`mailbot cases search TEXT` and the console's search box: cases by reference,
customer, subject or any word of their messages (notes included), through the
database's full-text index (migration 0007: SQLite FTS5, PostgreSQL tsvector).

Every word of the query must match (a word matches the words it begins: "virem"
finds "virement"); case and French accents do not matter. A reference
("KP-2026-000123") finds that case; an address finds the cases of that customer.
Results are a `QueuePage` (mailbot.cases.queue), newest case first.
"""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import ColumnElement, Integer, Select, TextClause, false, func, text
from sqlmodel import Session, col, select

from mailbot.app import App
from mailbot.cases.queue import MAX_PER_PAGE, BadFilter, QueueFilter, QueuePage, queue_row, statuses
from mailbot.mail.routing import REF_PATTERN
from mailbot.models import Case

MAX_TERMS = 8
ACCENTED = "àáâãäåçèéêëìíîïñòóôõöùúûüýÿœæ-./_@"  # as migration 0007 spells them (PostgreSQL)
PLAIN = "aaaaaaceeeeiiiinooooouuuuyyoa     "
PG_MESSAGE_DOC = (f"to_tsvector('simple'::regconfig, translate(lower(subject || ' ' || body_text), "
                  f"'{ACCENTED}', '{PLAIN}'))")
PG_CASE_DOC = (f"to_tsvector('simple'::regconfig, translate(lower(ref || ' ' || customer_name || ' ' || "
               f"customer_email || ' ' || subject), '{ACCENTED}', '{PLAIN}'))")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def terms(query: str) -> list[str]:
    """The words of a query, lower-case, without accents (at most MAX_TERMS)."""
    folded = "".join(ch for ch in unicodedata.normalize("NFKD", query.lower()) if not unicodedata.combining(ch))
    return re.findall(r"[^\W_]+", folded)[:MAX_TERMS]


_PG_FOLD = str.maketrans(ACCENTED, PLAIN)


def _fts_match(words: list[str]) -> TextClause:
    """Case ids whose messages or own fields hold every word (SQLite FTS5)."""
    query = " ".join(f'"{w}"*' for w in words)
    return text("SELECT m.case_id FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
                "WHERE messages_fts MATCH :q UNION SELECT rowid FROM cases_fts WHERE cases_fts MATCH :q"
                ).bindparams(q=query)


def _pg_match(words: list[str]) -> TextClause:
    """The same on PostgreSQL, through the GIN indexes on the same expressions."""
    query = " & ".join(f"{w.translate(_PG_FOLD)}:*" for w in words)
    return text(f"SELECT case_id FROM messages WHERE {PG_MESSAGE_DOC} @@ to_tsquery('simple', :q) "
                f"UNION SELECT id FROM cases WHERE {PG_CASE_DOC} @@ to_tsquery('simple', :q)"
                ).bindparams(q=query)


def _matching(session: Session, query: str) -> ColumnElement[bool] | None:
    """The condition on cases the query asks for; None when it has no word to look for."""
    stripped = query.strip()
    ref = REF_PATTERN.fullmatch(stripped.upper())
    if ref:
        return col(Case.ref) == stripped.upper()
    if _EMAIL.match(stripped):  # stored in lower case (senders.customer_contact, cases new): the index serves
        return col(Case.customer_email) == stripped.lower()
    words = terms(stripped)
    if not words:
        return None
    postgresql = session.get_bind().dialect.name == "postgresql"
    ids = (_pg_match if postgresql else _fts_match)(words).columns(case_id=Integer)
    return col(Case.id).in_(select(ids.subquery().c.case_id))


def search_cases(session: Session, app: App, query: str, *, status: str = "all",
                 brands: list[str] | None = None, page: int = 1, per_page: int = 50) -> QueuePage:
    """One page of the cases matching `query`, newest first, and how many match in all.
    `brands`: those the viewer may see (None: all). Raises BadFilter for a bad status or
    a query with no word in it."""
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise BadFilter(f"page must be at least 1 and per page between 1 and {MAX_PER_PAGE}")
    match = _matching(session, query)
    if match is None:
        raise BadFilter(f"nothing to search for in {query!r}: give a word, a reference or an address")
    where: list[ColumnElement[bool]] = [match, col(Case.status).in_(statuses(status))]
    if brands is not None:
        where.append(col(Case.brand).in_(brands) if brands else false())
    total = session.exec(select(func.count()).select_from(Case).where(*where)).one()
    stmt: Select = (select(Case).where(*where).order_by(col(Case.id).desc())  # type: ignore[type-arg]
                    .offset((page - 1) * per_page).limit(per_page))
    now = app.now()
    rows = [queue_row(app, c, now) for c in session.exec(stmt).all()]  # type: ignore[call-overload]
    return QueuePage(rows, int(total), page, per_page, QueueFilter(status=status))


def forget_erased(session: Session) -> None:
    """After personal data is erased (retention), rewrite SQLite's full-text index so no
    deleted word stays in its older segments (FTS5 only marks them deleted until a merge).
    Nothing to do on PostgreSQL: a vacuum drops the dead index entries with the rows."""
    if session.get_bind().dialect.name == "sqlite":
        session.flush()  # the erasing UPDATEs first: their triggers mark the words deleted
        for table in ("messages_fts", "cases_fts"):
            session.connection().exec_driver_sql(f"INSERT INTO {table}({table}) VALUES ('optimize')")
