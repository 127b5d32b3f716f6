"""`mailbot cases search TEXT` and the console's search box: cases by reference,
customer, subject or any word of their messages (notes included), through the
database's full-text index (migration 0007: SQLite FTS5, PostgreSQL tsvector).

Every word of the query must match (a word matches the words it begins: "virem"
finds "virement"); case and French accents do not matter. A reference
("KP-2026-000123") finds that case; an address finds the cases of that customer.
Results are a `QueuePage` (mailbot.cases.queue). Words are paged in the full-text
index's own order, so that a word most cases contain costs no more than a rare one:
first the cases whose reference, customer or subject hold the words (newest case
first), then the others by their most recent matching message (newest first). The
count stops at COUNT_CAP: past it the page says "more than 1,000" (`QueuePage.capped`)
and the next pages stay reachable.
"""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import ColumnElement, Select, TextClause, bindparam, false, func, text
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select

from mailbot.app import App
from mailbot.cases.queue import MAX_PER_PAGE, BadFilter, QueueFilter, QueuePage, queue_row, statuses
from mailbot.mail.routing import REF_PATTERN
from mailbot.models import Case

MAX_TERMS = 8
COUNT_CAP = 1000  # matches counted at most; past it, "more than 1,000"
_BATCH = 500  # index entries read at a time
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


_PG_MESSAGE_DOC_Q = PG_MESSAGE_DOC.replace("lower(subject || ' ' || body_text)",
                                           "lower(messages.subject || ' ' || messages.body_text)")
_PG_CASE_DOC_Q = PG_CASE_DOC.replace("lower(ref || ' ' || customer_name || ' ' || customer_email || ' ' || subject)",
                                     "lower(c.ref || ' ' || c.customer_name || ' ' || c.customer_email || ' ' || c.subject)")


def _streams(postgresql: bool, brands: list[str] | None, few: bool = False) -> list[TextClause]:
    """Two statements giving (key, case id) of matching cases of the wanted statuses and
    brands, key descending, `:n` at a time below `:before`: the cases whose own fields
    match (key: the case id), then the cases by their matching messages (key: the message
    id). SQLite's FTS5 reads its index backwards (CROSS JOIN keeps it the outer loop).
    PostgreSQL reads the cases' fields through the GIN index (MATERIALIZED): a LIMIT made it
    walk every case's tsvector for a word in none of them. The
    messages: `few` (the count found fewer than COUNT_CAP cases, so a few thousand messages
    at most) through the GIN index too, then sorted; otherwise by walking the messages'
    primary key newest first, where a word many messages hold is met at once — but a rare
    word made that walk compute every message's tsvector (bench/README.md, a rare word
    through the GIN index)."""
    only = " AND c.brand IN :brands" if brands is not None else ""
    if postgresql:
        messages = (f"WITH m AS MATERIALIZED (SELECT messages.id, messages.case_id FROM messages "
                    f"JOIN cases c ON c.id = messages.case_id "
                    f"WHERE {_PG_MESSAGE_DOC_Q} @@ to_tsquery('simple', :q) AND c.status IN :statuses{only}) "
                    f"SELECT id, case_id FROM m WHERE id < :before ORDER BY id DESC LIMIT :n" if few else
                    f"SELECT messages.id, messages.case_id FROM messages JOIN cases c ON c.id = messages.case_id "
                    f"WHERE {_PG_MESSAGE_DOC_Q} @@ to_tsquery('simple', :q) AND messages.id < :before "
                    f"AND c.status IN :statuses{only} ORDER BY messages.id DESC LIMIT :n")
        sql = [f"WITH k AS MATERIALIZED (SELECT c.id FROM cases c WHERE {_PG_CASE_DOC_Q} @@ to_tsquery('simple', :q) "
               f"AND c.status IN :statuses{only}) SELECT id, id FROM k WHERE id < :before ORDER BY id DESC LIMIT :n",
               messages]
    else:
        sql = ["SELECT cases_fts.rowid, c.id FROM cases_fts CROSS JOIN cases c ON c.id = cases_fts.rowid "
               f"WHERE cases_fts MATCH :q AND cases_fts.rowid < :before AND c.status IN :statuses{only} "
               "ORDER BY cases_fts.rowid DESC LIMIT :n",
               "SELECT messages_fts.rowid, m.case_id FROM messages_fts CROSS JOIN messages m "
               "ON m.id = messages_fts.rowid CROSS JOIN cases c ON c.id = m.case_id "
               f"WHERE messages_fts MATCH :q AND messages_fts.rowid < :before AND c.status IN :statuses{only} "
               "ORDER BY messages_fts.rowid DESC LIMIT :n"]
    params = [bindparam("statuses", expanding=True)] + ([bindparam("brands", expanding=True)] if brands is not None else [])
    return [text(q).bindparams(*params) for q in sql]


def _first_ids(conn: Connection, stmts: list[TextClause], params: dict[str, object], need: int) -> list[int]:
    """The first `need` distinct case ids of the streams, in order (fewer: all of them)."""
    seen: dict[int, None] = {}
    for stmt in stmts:
        before = 2 ** 62
        while len(seen) < need:
            n = min(_BATCH, need - len(seen) + 10)
            rows = conn.execute(stmt, {**params, "before": before, "n": n}).all()
            for _, case_id in rows:
                seen.setdefault(int(case_id))
            if len(rows) < n:
                break
            before = rows[-1][0]
    return list(seen)[:need]


def _pg_count(conn: Connection, brands: list[str] | None, params: dict[str, object], need: int) -> set[int]:
    """Up to about `need` distinct matching case ids, unordered (PostgreSQL): the GIN indexes'
    bitmaps (MATERIALIZED: planned whole, read lazily), stopped after 3 * need rows."""
    only = " AND c.brand IN :brands" if brands is not None else ""
    stmt = text(f"WITH m AS MATERIALIZED (SELECT case_id FROM messages WHERE {PG_MESSAGE_DOC} @@ to_tsquery('simple', :q) "
                f"UNION ALL SELECT id FROM cases WHERE {PG_CASE_DOC} @@ to_tsquery('simple', :q)) "
                f"SELECT m.case_id FROM m JOIN cases c ON c.id = m.case_id WHERE c.status IN :statuses{only} LIMIT :n"
                ).bindparams(*[bindparam("statuses", expanding=True)]
                             + ([bindparam("brands", expanding=True)] if brands is not None else []))
    rows = conn.execute(stmt, {**params, "n": 3 * need}).all()
    found = {int(r[0]) for r in rows}
    return found if len(rows) < 3 * need or len(found) >= need else set(range(need))  # many rows, few cases: "more than"


def _search_words(session: Session, app: App, words: list[str], status: str, brands: list[str] | None,
                  page: int, per_page: int) -> QueuePage:
    """A page of the cases holding every word, in the index's order; counted up to COUNT_CAP."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    q = (" & ".join(f"{w.translate(_PG_FOLD)}:*" for w in words) if postgresql
         else " ".join(f'"{w}"*' for w in words))
    params: dict[str, object] = {"q": q, "statuses": list(statuses(status))}
    if brands is not None:
        if not brands:
            return QueuePage([], 0, page, per_page, QueueFilter(status=status))
        params["brands"] = list(brands)
    need = max(COUNT_CAP, page * per_page) + 1
    if postgresql:  # counted through the GIN bitmaps first: the count says how to read the page
        counted = _pg_count(session.connection(), brands, params, need)
        capped = len(counted) >= need
        total = need - 1 if capped else len(counted)
        ids = _first_ids(session.connection(), _streams(True, brands, few=not capped), params, page * per_page + 1)
    else:
        ids = _first_ids(session.connection(), _streams(False, brands), params, need)
        capped = len(ids) == need  # more match than counted
        total = need - 1 if capped else len(ids)
    wanted = ids[(page - 1) * per_page:page * per_page]
    cases = {c.id: c for c in session.exec(select(Case).where(col(Case.id).in_(wanted)))} if wanted else {}
    now = app.now()
    rows = [queue_row(app, cases[i], now) for i in wanted if i in cases]
    return QueuePage(rows, total, page, per_page, QueueFilter(status=status), capped=capped)


def _matching(session: Session, query: str) -> ColumnElement[bool] | None:
    """The condition on cases a reference or an address asks for; None for words."""
    stripped = query.strip()
    ref = REF_PATTERN.fullmatch(stripped.upper())
    if ref:
        return col(Case.ref) == stripped.upper()
    if _EMAIL.match(stripped):  # stored in lower case (senders.customer_contact, cases new): the index serves
        return col(Case.customer_email) == stripped.lower()
    return None


def search_cases(session: Session, app: App, query: str, *, status: str = "all",
                 brands: list[str] | None = None, page: int = 1, per_page: int = 50) -> QueuePage:
    """One page of the cases matching `query` and how many match (up to COUNT_CAP: see the
    module's text for the order). `brands`: those the viewer may see (None: all). Raises
    BadFilter for a bad status or a query with no word in it."""
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise BadFilter(f"page must be at least 1 and per page between 1 and {MAX_PER_PAGE}")
    match = _matching(session, query)
    if match is None and terms(query):
        return _search_words(session, app, terms(query), status, brands, page, per_page)
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
