"""`cases search`: references, customers, subjects and every message's words, through the
database's full-text index (issue #23 item 6)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import bindparam, text
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.caselocks import lock
from mailbot.cases import actions, search_index
from mailbot.cases.lifecycle import purge_retention
from mailbot.cases.queue import BadFilter, statuses
from mailbot.cases.records import add_message
from mailbot.cases.search import PG_MESSAGE_DOC, search_cases, terms
from mailbot.ingest.pipeline import Received, ingest, ingest_batch
from mailbot.models import Case
from tests.conftest import Clock
from tests.mails import mail


def found(app: App, query: str, **kw: object) -> list[str]:
    with db.read_scope(app.engine) as s:
        return sorted(r.ref for r in search_cases(s, app, query, **kw).rows)  # type: ignore[arg-type]


@pytest.fixture
def three(app: App) -> App:
    ingest(app, mail(frm="Hélène Lefèvre <helene@example.org>", subject="Prélèvement contesté",
                     body="Une réclamation pour un prélèvement SEPA de 89,90 € que je n'ai jamais autorisé."), "smtp")
    ingest(app, mail(frm="Bob Martin <bob@example.org>", subject="Application bloquée",
                     body="Impossible de me connecter à l'application depuis la mise à jour."), "smtp")
    ingest(app, mail(to="info@divikeys.com", frm="Chloé <chloe@example.org>", subject="Dividendes",
                     body="Les dividendes du projet Solaris n'ont pas été versés."), "smtp")
    return app


def test_words_of_messages_subjects_and_customers_are_found(three: App) -> None:
    app = three
    assert found(app, "prélèvement") == ["KP-2026-000001"]
    assert found(app, "PRELEVEMENT sepa") == ["KP-2026-000001"]  # accents and case do not matter
    assert found(app, "reclam") == ["KP-2026-000001"]  # a word matches the words it begins
    assert found(app, "prélèvement application") == []  # every word must match
    assert found(app, "lefevre") == ["KP-2026-000001"]  # the customer's name
    assert found(app, "bob@example.org") == ["KP-2026-000002"]  # the customer's address
    assert found(app, "kp-2026-000002") == ["KP-2026-000002"]  # a reference
    assert found(app, "solaris") == ["DK-2026-000001"]
    assert found(app, "application", status="closed") == []
    with pytest.raises(BadFilter, match="nothing to search"):
        found(app, " ?! ")


def test_notes_and_replies_are_searched_too(three: App) -> None:
    app = three
    with db.session_scope(app.engine) as s:
        case = s.exec(select(Case).where(Case.ref == "KP-2026-000002")).one()
        actions.note(s, app, case, "agent@kalra-plus.com", "Voir ticket Jira MOB-4711 côté éditeur.")
    assert found(app, "mob 4711") == ["KP-2026-000002"]


def test_terms_are_words_without_accents() -> None:
    assert terms("Réclamation « urgente » n°42 — Œuvre") == ["reclamation", "urgente", "n", "42", "œuvre"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_searches_through_its_gin_index(three: App) -> None:
    with three.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(r[0] for r in conn.execute(text(
            f"EXPLAIN SELECT case_id FROM messages WHERE {PG_MESSAGE_DOC} @@ to_tsquery('simple', 'sepa:*')")))
    assert "ix_messages_search" in plan, plan


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_purge_takes_the_words_out_of_the_index_and_the_file(app: App, clock: Clock, tmp_path: Path) -> None:
    ingest(app, mail(frm="Hortense Zylberstein <hortense@example.org>", body="Mot secret: quetzalcoatlus."), "smtp")
    with db.session_scope(app.engine) as s:
        case = lock(s, s.exec(select(Case)).one())
        case.status, case.closed_at = "closed", clock.now
    assert found(app, "quetzalcoatlus") == found(app, "zylberstein") == ["KP-2026-000001"]
    clock.now += timedelta(days=365 * 5 + 2)
    assert purge_retention(app) == 1
    assert found(app, "quetzalcoatlus") == found(app, "zylberstein") == []
    app.engine.dispose()
    for p in tmp_path.glob("mailbot.db*"):
        data = p.read_bytes()
        i = data.find(b"quetzalcoatlus")
        assert i < 0, (p.name, data[max(0, i - 300):i + 40])
        i = data.find(b"zylberstein")
        assert i < 0, (p.name, data[max(0, i - 300):i + 40])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_sqlite_index_is_kept_by_triggers_at_head(app: App) -> None:
    with app.engine.connect() as conn:
        triggers = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))}
    assert {f"{t}_fts_{w}" for t in ("messages", "cases")
            for w in ("insert", "defer", "delete", "update")} <= triggers  # 0007, 0014


def test_the_query_spells_the_indexed_expressions_of_migration_0007() -> None:
    import importlib

    from mailbot.cases import search

    migration = importlib.import_module("mailbot.migrations.versions.0007_case_search")
    assert (migration.PG_MESSAGE_DOC, migration.PG_CASE_DOC) == (search.PG_MESSAGE_DOC, search.PG_CASE_DOC)


def test_a_customers_address_is_looked_up_through_the_index(three: App) -> None:
    """Addresses are stored in lower case: the search compares them as such, so the
    (customer_email) index answers instead of a scan of every case (bench/README.md)."""
    assert found(three, "Bob@Example.ORG") == ["KP-2026-000002"]
    with db.read_scope(three.engine) as s:
        from mailbot.cases.search import _matching

        condition = _matching(s, "bob@example.org")
        assert condition is not None
        stmt = select(Case.id).where(condition).compile(s.get_bind(), compile_kwargs={"literal_binds": True})
        if s.get_bind().dialect.name != "sqlite":
            return  # (PostgreSQL's planner scans a table of three rows, rightly)
        plan = " ".join(str(r) for r in s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {stmt}").all())
    assert "SEARCH" in plan and "ix_cases_customer_email" in plan, plan  # a lookup, not a scan of the index


def _virements(app: App, n: int) -> None:
    for i in range(n):
        ingest(app, mail(frm=f"Client {i} <c{i}@example.org>", subject=f"Réclamation {i}",
                         body="Mon virement est bloqué depuis lundi."), "smtp")


def test_a_word_most_cases_hold_is_paged_from_the_index_with_a_capped_count(
        app: App, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A common word is not counted past COUNT_CAP ("more than …", never a silent cut),
    pages are read from the index a batch at a time, and every match stays reachable:
    cases by their newest matching message first (bench/README.md, search)."""
    from mailbot.cases import search
    from mailbot.cli.printing import print_queue

    monkeypatch.setattr(search, "COUNT_CAP", 3)
    monkeypatch.setattr(search, "_BATCH", 2)
    _virements(app, 6)
    with db.session_scope(app.engine) as s:  # the oldest case's note is the newest message saying it
        case = s.exec(select(Case).where(Case.ref == "KP-2026-000001")).one()
        actions.note(s, app, case, "agent@kalra-plus.com", "Le virement est parti ce matin.")
    with db.read_scope(app.engine) as s:
        first = search_cases(s, app, "virement", per_page=2)
        assert (first.total, first.capped, first.total_text, first.has_next) == (3, True, "more than 3", True)
        print_queue(first, what="matching 'virement'")
        refs = [r.ref for p in (1, 2, 3) for r in search_cases(s, app, "virement", page=p, per_page=2).rows]
        last = search_cases(s, app, "virement", page=3, per_page=2)
        assert (last.total, last.capped, last.has_next) == (6, False, False)  # counted to the end: exact
        assert search_cases(s, app, "virement", brands=["divikeys"]).rows == []
    assert refs == ["KP-2026-000001", "KP-2026-000006", "KP-2026-000005", "KP-2026-000004",
                    "KP-2026-000003", "KP-2026-000002"]
    out = capsys.readouterr().out
    assert "more than 3 cases (matching 'virement'); showing 1-2 of more than 3; next: --page 2" in out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_reads_the_full_text_index_in_order_without_sorting(app: App) -> None:
    """The page and the count come from FTS5 read backwards, not from every match sorted."""
    from sqlalchemy import event

    _virements(app, 2)
    statements: list[tuple[str, object]] = []

    def seen(conn: object, cursor: object, sql: str, params: object, *_: object) -> None:
        if "_fts MATCH" in sql:
            statements.append((sql, params))

    event.listen(app.engine, "before_cursor_execute", seen)
    with db.read_scope(app.engine) as s:
        assert search_cases(s, app, "virement", brands=["kalra-plus"]).total == 2
    event.remove(app.engine, "before_cursor_execute", seen)
    assert len(statements) == 2  # the cases' own fields, then the messages
    with app.engine.connect() as conn:
        for sql, params in statements:
            plan = " / ".join(str(r[3]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))  # type: ignore[arg-type]
            assert "TEMP B-TREE" not in plan and "VIRTUAL TABLE" in plan, plan


def test_the_console_says_more_than_when_the_count_is_capped(
        make_app: Callable[..., App], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailbot.cases import search
    from tests.test_web_staff import sign_in
    from tests.webtools import WEB

    monkeypatch.setattr(search, "COUNT_CAP", 5)
    app = make_app(web=WEB)
    _virements(app, 4)
    c = sign_in(app, tmp_path, "agent@kalra-plus.com")
    page = c.get("/staff/search?q=virement").text
    assert "Dossiers 1 à 4 sur 4" in page  # a page of 50 counted to the end: exact
    monkeypatch.setattr(search, "COUNT_CAP", 1)
    from mailbot.web import console

    monkeypatch.setattr(console, "PER_PAGE", 1)
    page = c.get("/staff/search?q=virement").text
    assert "Dossiers 1 à 1 sur plus de 1" in page and "page=2" in page


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_reads_a_word_few_cases_hold_from_its_gin_index_in_the_same_order(app: App) -> None:
    """Under COUNT_CAP matching cases, the messages are read through the GIN index and then
    sorted, never by walking every message newest first (a rare word took 8–10 s over
    100,000 cases that way): the same cases, in the same order, as the index-order walk."""
    from mailbot.cases import search

    _virements(app, 6)
    with db.session_scope(app.engine) as s:
        case = s.exec(select(Case).where(Case.ref == "KP-2026-000001")).one()
        actions.note(s, app, case, "agent@kalra-plus.com", "Le virement est parti ce matin.")
    params = {"q": "virement:*", "statuses": list(statuses("all"))}
    with db.read_scope(app.engine) as s:
        refs = [r.ref for r in search_cases(s, app, "virement", per_page=10).rows]
        conn = s.connection()
        walked = search._first_ids(conn, search._streams(True, None), params, 100)
        read = search._first_ids(conn, search._streams(True, None, few=True), params, 100)
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        explain = text("EXPLAIN " + search._streams(True, None, few=True)[1].text).bindparams(
            bindparam("statuses", expanding=True))
        plan = "\n".join(r[0] for r in conn.execute(explain, {**params, "before": 2 ** 62, "n": 10}))
    assert refs == ["KP-2026-000001", "KP-2026-000006", "KP-2026-000005", "KP-2026-000004",
                    "KP-2026-000003", "KP-2026-000002"]
    assert read == walked and len(read) == 6
    assert "ix_messages_search" in plan and "Index Scan Backward using messages_pkey" not in plan, plan


def _index_is_sound(app: App) -> None:
    """FTS5's own check: the index holds exactly the words of the rows (external content)."""
    with db.session_scope(app.engine) as s:
        for table in ("messages_fts", "cases_fts"):
            s.connection().exec_driver_sql(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)")
        left = [s.connection().exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
                for t in ("search_pending", "search_deferral")]
    assert left == [0, 0]  # nothing waits to be indexed, no batch is deferring


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_batch_is_indexed_once_at_its_end_and_leaves_nothing_pending(app: App) -> None:
    """An IMAP batch defers the index to its end (migration 0014): every word is found after
    the commit, as with mails ingested one by one, and the index matches the rows."""
    ingest_batch(app, [
        Received(mail(frm="Ophélie Quenouille <ophelie@example.org>", message_id=f"<q{n}@example.org>",
                      subject=f"Réclamation numéro {word}", body=f"Le mot du jour est {word}."), "imap:x")
        for n, word in enumerate(("xylophone", "zeppelin", "quokka"))])
    assert found(app, "xylophone") == ["KP-2026-000001"]
    assert found(app, "quokka") == ["KP-2026-000003"]
    assert found(app, "quenouille") == ["KP-2026-000001", "KP-2026-000002", "KP-2026-000003"]  # the cases' own index
    _index_is_sound(app)
    ingest(app, mail(frm="Bob <bob@example.org>", body="Un tamanoir dans le texte."), "smtp")  # one mail: triggers
    assert found(app, "tamanoir") == ["KP-2026-000004"]
    _index_is_sound(app)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rows_changed_or_deleted_while_deferred_are_indexed_as_they_end(app: App) -> None:
    """Inside `search_index.deferred`: a new row changed before the end is indexed with its last
    words, a new row deleted is not indexed, an older row changed is indexed again at once."""
    ingest(app, mail(frm="Bob <bob@example.org>", body="Un ancien mot : ornithorynque."), "smtp")
    with db.session_scope(app.engine) as s, search_index.deferred(s):
        case = s.exec(select(Case)).one()
        kept = add_message(s, case, direction="int", kind="note", message_id=None, subject="note",
                           from_addr="agent@example.org", body_text="premier jet : wapiti")
        gone = add_message(s, case, direction="int", kind="note", message_id=None, subject="note",
                           from_addr="agent@example.org", body_text="effacé : okapi")
        conn = s.connection()
        conn.execute(text("UPDATE messages SET body_text = 'version finale : capybara' WHERE id = :i"), {"i": kept.id})
        conn.execute(text("DELETE FROM messages WHERE id = :i"), {"i": gone.id})
        conn.execute(text("UPDATE messages SET body_text = 'un nouveau mot : axolotl' "
                          "WHERE body_text LIKE '%ornithorynque%'"))
    assert found(app, "capybara") == found(app, "axolotl") == ["KP-2026-000001"]
    assert found(app, "wapiti") == found(app, "okapi") == found(app, "ornithorynque") == []
    _index_is_sound(app)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_batch_that_fails_leaves_the_triggers_indexing(app: App) -> None:
    """The deferral is a row of the batch's own transaction: rolled back with it."""
    with pytest.raises(RuntimeError), db.session_scope(app.engine) as s, search_index.deferred(s):
        raise RuntimeError("the batch fails")
    ingest(app, mail(frm="Bob <bob@example.org>", body="Un suricate passe."), "smtp")
    assert found(app, "suricate") == ["KP-2026-000001"]
    _index_is_sound(app)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_deferral_left_behind_is_taken_over_by_the_next_batch(app: App) -> None:
    """Were a deferral row ever committed (no code path does), the rows written meanwhile wait
    unindexed; the next batch takes the row over and indexes them, rather than failing."""
    with db.session_scope(app.engine) as s:
        s.connection().exec_driver_sql("INSERT INTO search_deferral (id) VALUES (1)")
    ingest(app, mail(frm="Bob <bob@example.org>", body="Un pangolin attend."), "smtp")
    assert found(app, "pangolin") == []
    ingest_batch(app, [Received(mail(frm=f"c{n}@example.org", message_id=f"<c{n}@example.org>",
                                     body="Un lamantin arrive."), "imap:x") for n in range(2)])
    assert found(app, "pangolin") == ["KP-2026-000001"]
    assert found(app, "lamantin") == ["KP-2026-000002", "KP-2026-000003"]
    _index_is_sound(app)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_0014_goes_down_to_the_row_by_row_triggers_and_up_again(app: App) -> None:
    def triggers() -> set[str]:
        with app.engine.connect() as conn:
            return {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))}

    db.downgrade(app.engine, "0013")
    assert {t for t in triggers() if "_fts_" in t} == {f"{t}_fts_{w}" for t in ("messages", "cases")
                                                       for w in ("insert", "delete", "update")}
    ingest(app, mail(frm="Bob <bob@example.org>", body="Un tatou passe."), "smtp")
    assert found(app, "tatou") == ["KP-2026-000001"]
    db.upgrade(app.engine)
    ingest_batch(app, [Received(mail(frm=f"c{n}@example.org", message_id=f"<t{n}@example.org>",
                                     body="Un tatou revient."), "imap:x") for n in range(2)])
    assert found(app, "tatou") == ["KP-2026-000001", "KP-2026-000002", "KP-2026-000003"]
    _index_is_sound(app)
