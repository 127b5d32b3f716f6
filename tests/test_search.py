"""`cases search`: references, customers, subjects and every message's words, through the
database's full-text index (issue #23 item 6)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.caselocks import lock
from mailbot.cases import actions
from mailbot.cases.lifecycle import purge_retention
from mailbot.cases.queue import BadFilter
from mailbot.cases.search import PG_MESSAGE_DOC, search_cases, terms
from mailbot.ingest.pipeline import ingest
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
    assert {f"{t}_fts_{w}" for t in ("messages", "cases") for w in ("insert", "delete", "update")} <= triggers


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
