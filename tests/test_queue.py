"""The work queue and the case view (issue #23 items 5 and 6): local times, deadline order,
filters that mean something or say what is valid, a count and pages; a case's messages
with their text, notes, attachments, timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from mailbot import db
from mailbot.app import App
from mailbot.cases import actions
from mailbot.cases.queue import BadFilter, QueueFilter, list_cases
from mailbot.cases.views import attachment_bytes, case_detail, format_case
from mailbot.cli.printing import print_queue
from mailbot.ingest.pipeline import ingest
from mailbot.models import Case
from tests.conftest import Clock
from tests.mails import mail


def new_case(app: App, n: int, **kw: object) -> str:
    kw.setdefault("frm", f"Client {n} <client{n}@example.org>")
    kw.setdefault("message_id", f"<q{n}@example.org>")
    return ingest(app, mail(**kw), "smtp").case_refs[0]  # type: ignore[arg-type]


def act(app: App, ref: str, fn) -> None:  # type: ignore[no-untyped-def]
    with db.session_scope(app.engine) as s:
        fn(s, s.exec(select(Case).where(Case.ref == ref)).one())


def refs(app: App, **kw: object) -> list[str]:
    page_kw = {k: kw.pop(k) for k in ("page", "per_page", "sort") if k in kw}
    with db.read_scope(app.engine) as s:
        return [r.ref for r in list_cases(s, app, QueueFilter(**kw), **page_kw).rows]  # type: ignore[arg-type]


def test_the_queue_reads_deadlines_in_the_brands_local_time(app: App, clock: Clock,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    clock.now = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # a Friday: 15 business days end on Monday 28
    ref = new_case(app, 1, to="info@divikeys.com")
    with db.read_scope(app.engine) as s:
        page = list_cases(s, app, QueueFilter())
    (row,) = page.rows
    assert row.due_local is not None and row.due_at is not None
    assert (row.due_local.date(), row.due_at.date()) == (datetime(2026, 12, 28).date(), datetime(2026, 12, 29).date())
    print_queue(page)
    out = capsys.readouterr().out
    assert f"{ref}" in out and "2026-12-28 23:59 AST" in out and "2026-12-29" not in out


def test_the_queue_is_sorted_by_deadline_and_filters_say_what_is_valid(app: App) -> None:
    simple = new_case(app, 1)  # 5 business days
    fees = new_case(app, 2, subject="Frais injustifiés", body="Des frais de tenue de compte prélevés à tort.")  # 15
    dk = new_case(app, 3, to="info@divikeys.com")  # 15
    urgent = new_case(app, 4, body="Opération non reconnue : fraude sur ma carte !")
    assert refs(app)[0] in (simple, urgent) and refs(app)[-1] in (fees, dk)
    due = refs(app)
    with db.read_scope(app.engine) as s:
        rows = list_cases(s, app, QueueFilter()).rows
    assert [r.due_at for r in rows] == sorted(r.due_at for r in rows)  # type: ignore[type-var]
    assert set(due) == {simple, fees, dk, urgent}
    assert refs(app, brand="divikeys") == [dk]
    with pytest.raises(BadFilter, match="open.*waiting_customer"):
        refs(app, status="bogus")
    with pytest.raises(BadFilter, match="kalra-plus"):
        refs(app, brand="nope")
    act(app, simple, lambda s, c: actions.assign(s, app, c, "supervisor@kalra-plus.com", "agent@kalra-plus.com"))
    act(app, fees, lambda s, c: actions.assign(s, app, c, "agent@kalra-plus.com", "supervisor@kalra-plus.com"))
    assert refs(app, assignee="agent@kalra-plus.com") == [simple]
    assert set(refs(app, assignee="none")) == {dk, urgent}
    assert set(refs(app, mine="agent@kalra-plus.com")) == {simple, urgent}  # theirs, and the brand's unassigned
    act(app, urgent, lambda s, c: actions.close(s, app, c, "supervisor@kalra-plus.com", "doublon"))
    assert urgent not in refs(app) and urgent in refs(app, status="all") and refs(app, status="closed") == [urgent]


def test_overdue_and_due_today(app: App, clock: Clock) -> None:
    first = new_case(app, 1)  # received Monday 23 November: due Monday 30 November 23:59 Paris
    clock.now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    second = new_case(app, 2)  # due Friday 4 December
    clock.now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert refs(app, due_today=True) == [first] and refs(app, overdue=True) == []
    clock.now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # 00:30 on 1 December in Paris
    assert refs(app, due_today=True) == [] and refs(app, overdue=True) == [first]
    with db.read_scope(app.engine) as s:
        (row,) = list_cases(s, app, QueueFilter(overdue=True)).rows
    assert row.overdue is not None and row.overdue < timedelta(hours=1)
    assert second in refs(app)


def test_a_count_and_pages_never_a_silent_cut(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    made = [new_case(app, n) for n in range(7)]
    with db.read_scope(app.engine) as s:
        pages = [list_cases(s, app, QueueFilter(), page=p, per_page=3) for p in (1, 2, 3)]
    assert [p.total for p in pages] == [7, 7, 7] and [len(p.rows) for p in pages] == [3, 3, 1]
    assert [p.has_next for p in pages] == [True, True, False]
    assert sorted(r.ref for p in pages for r in p.rows) == sorted(made)
    print_queue(pages[0])
    assert capsys.readouterr().out.splitlines()[-1] == "7 cases (status open); showing 1-3 of 7; next: --page 2"


def test_the_case_view_has_every_message_text_notes_attachments_and_local_times(app: App) -> None:
    ref = new_case(app, 1, message_id="<orig@example.org>",
                   attachments=(("relevé.pdf", "application/pdf", b"%PDF-1.4 nov"),))
    reply = ("Voici le relevé demandé.\n\nLe lun. 23 nov. 2026 à 10:00, Kalra-plus <support@kalra-plus.com> a écrit :\n"
             "> Bonjour,\n> nous avons bien reçu votre réclamation.\n> Cordialement\n")
    ingest(app, mail(frm="Client 1 <client1@example.org>", body=reply, In_Reply_To="<orig@example.org>",
                     attachments=(("capture.png", "image/png", b"\x89PNG..."),)), "smtp")
    act(app, ref, lambda s, c: actions.note(s, app, c, "agent@kalra-plus.com", "Client connu."))
    with db.read_scope(app.engine) as s:
        case = s.exec(select(Case).where(Case.ref == ref)).one()
        d = case_detail(s, app, case)
        assert d.received_at.utcoffset() == timedelta(hours=1)  # Paris in winter
        customer = [m for m in d.messages if m.kind == "customer"]
        assert "1 250,00" in customer[0].text
        assert customer[1].text == "Voici le relevé demandé." and customer[1].quoted_lines == 4
        assert "nous avons bien reçu" in customer[1].full_text
        assert [(n.author, n.text) for n in d.notes] == [("agent@kalra-plus.com", "Client connu.")]
        assert [(a.n, a.filename) for a in d.attachments] == [(1, "relevé.pdf"), (2, "capture.png")]
        found = attachment_bytes(s, app, case, 2)
        assert not isinstance(found, str) and found[1] == b"\x89PNG..."
        assert "no #3" in attachment_bytes(s, app, case, 3)  # type: ignore[operator]
        text = format_case(d)
        js = d.to_json()
    assert "| Voici le relevé demandé." in text and "[4 quoted lines folded" in text and "Client connu." in text
    assert "attachment #2 capture.png" in text and " CET" in text
    assert js["notes"][0]["text"] == "Client connu." and js["attachments"][1]["filename"] == "capture.png"
    assert js["timezone"] == "Europe/Paris" and js["due_at"].endswith("+01:00")
    assert all(m["kind"] != "note" for m in js["messages"])


def test_pages_in_deadline_order_across_brands_and_statuses_match_one_sort(app: App, clock: Clock) -> None:
    from sqlalchemy import text

    made = []
    for n in range(9):  # both brands, several statuses, deadlines interleaved
        clock.now += timedelta(hours=7)
        made.append(new_case(app, n, to="info@divikeys.com" if n % 3 == 0 else "support@kalra-plus.com"))
    act(app, made[1], lambda s, c: actions.set_priority(s, app, c, "cli", "urgent"))
    with app.engine.begin() as conn:
        conn.execute(text("UPDATE cases SET status = 'in_progress' WHERE id % 2 = 0"))
        conn.execute(text("UPDATE cases SET status = 'waiting_customer' WHERE id = 3"))
        conn.execute(text("UPDATE cases SET due_at = NULL WHERE id = 5"))  # no deadline: last
    with db.read_scope(app.engine) as s:
        expected = [c.ref for c in sorted(s.exec(select(Case)).all(),
                                          key=lambda c: (c.due_at is None, c.due_at or datetime.min, c.id))]
    assert expected[-1] == made[4]
    assert refs(app) == expected
    paged = [r for p in (1, 2, 3, 4) for r in refs(app, page=p, per_page=3)]
    assert paged == expected
    assert refs(app, brand="divikeys") == [r for r in expected if r.startswith("DK")]
    assert refs(app, status="in_progress", page=2, per_page=2) == [
        r for r, c in zip(expected, _statuses(app, expected), strict=True) if c == "in_progress"][2:4]


def _statuses(app: App, refs_: list[str]) -> list[str]:
    with db.read_scope(app.engine) as s:
        by_ref = {c.ref: c.status for c in s.exec(select(Case))}
    return [by_ref[r] for r in refs_]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # (PostgreSQL's plan depends on the table's size)
def test_the_queue_reads_its_page_and_count_from_the_index_without_sorting_every_case(app: App) -> None:
    import sqlalchemy

    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    new_case(app, 1)
    sqlalchemy.event.listen(app.engine, "before_cursor_execute", capture)
    try:
        refs(app, brands=["kalra-plus"], mine="agent@kalra-plus.com")
    finally:
        sqlalchemy.event.remove(app.engine, "before_cursor_execute", capture)
    with app.engine.connect() as conn:
        plans = [[str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + st, p)] for st, p in seen]
    count, page, rows = plans
    # "mine" is two disjoint parts, each counted from one range of an index alone: assigned to
    # me (ix_cases_assignee), unassigned in my brands
    counted = [line for line in count if "cases" in line]
    assert len(counted) == 2 and all(line.startswith("SEARCH cases USING COVERING INDEX") for line in counted), count
    assert "ix_cases_assignee (assignee=?" in counted[0], count
    arms = [line for line in page if "cases" in line]
    # each part's (brand, status) read in deadline order from an index, stopped at the page; only
    # the few ids taken are sorted (no sort of whole rows); cases without a deadline: one arm a part
    assert all(line.startswith("SEARCH cases USING") for line in arms) and len(arms) == 12, page
    assert sum("status=? AND due_at>?" in line for line in arms) == 10, page
    assert sum("ix_cases_assignee (assignee=? AND brand=? AND status=? AND due_at>?)" in line for line in arms) >= 5, page
    assert rows == ["SEARCH cases USING INTEGER PRIMARY KEY (rowid=?)"], rows


def _old_mine(app: App, f: QueueFilter, page: int, per_page: int, sort: str) -> tuple[int, list[int]]:
    """The queue's "mine" as it was one statement (an OR), sorted whole: the reference."""
    from dataclasses import replace

    from sqlalchemy import and_, func, or_

    from mailbot.cases.queue import _conditions

    assert f.mine
    agent = app.config.agent(f.mine)
    theirs = list(agent.brands) if agent else []
    where = [*_conditions(app, replace(f, mine=None), app.now()),
             or_(Case.assignee == f.mine.lower(), and_(Case.assignee.is_(None), Case.brand.in_(theirs)))]  # type: ignore[union-attr, attr-defined]
    order = {"due": (Case.due_at.is_(None), Case.due_at, Case.id),  # type: ignore[union-attr]
             "received": (Case.received_at.desc(), Case.id.desc()),  # type: ignore[attr-defined, union-attr]
             "updated": (Case.id.desc(),)}[sort]  # type: ignore[union-attr]
    with db.read_scope(app.engine) as s:
        total = s.exec(select(func.count()).select_from(Case).where(*where)).one()
        ids = s.exec(select(Case.id).where(*where).order_by(*order).offset((page - 1) * per_page).limit(per_page)).all()
    return int(total), [i for i in ids if i is not None]


def test_mine_gives_exactly_the_rows_order_and_pages_of_the_single_or(app: App, clock: Clock) -> None:
    """"mine" is read as two disjoint parts (assigned to me; unassigned in my brands), counted
    and paged apart and merged: every filter, sort and page gives what the one OR gave."""
    from sqlalchemy import text

    for n in range(16):  # both brands, deadlines apart
        clock.now += timedelta(hours=5)
        new_case(app, n, to="info@divikeys.com" if n % 3 == 0 else "support@kalra-plus.com")
    tie = datetime(2026, 12, 20, 22, 59, tzinfo=UTC)
    with app.engine.begin() as conn:  # a mix: mine in my brand and in another, others', unassigned; ties
        conn.execute(text("UPDATE cases SET assignee = CASE id % 4 WHEN 0 THEN 'agent@kalra-plus.com' "
                          "WHEN 2 THEN 'agent@divikeys.com' WHEN 3 THEN 'supervisor@kalra-plus.com' END"))
        conn.execute(text("UPDATE cases SET status = 'in_progress' WHERE id % 5 = 0"))
        conn.execute(text("UPDATE cases SET status = 'waiting_customer' WHERE id % 6 = 0"))
        conn.execute(text("UPDATE cases SET status = 'closed' WHERE id % 7 = 0"))
        conn.execute(text("UPDATE cases SET due_at = :t WHERE id IN (2, 4, 6, 8, 13)"), {"t": tie})
        conn.execute(text("UPDATE cases SET received_at = :t WHERE id % 3 = 1"), {"t": tie})
        conn.execute(text("UPDATE cases SET due_at = NULL WHERE id IN (1, 5, 9, 12, 16)"))  # mine: 5, 9, 12, 16
    me = "Agent@Kalra-plus.com"
    filters = [QueueFilter(mine=me), QueueFilter(mine=me, brand="kalra-plus"), QueueFilter(mine=me, brand="divikeys"),
               QueueFilter(mine=me, brands=["kalra-plus"]), QueueFilter(mine=me, brands=[]),
               QueueFilter(mine=me, status="all"), QueueFilter(mine=me, status="in_progress"),
               QueueFilter(mine=me, assignee="none"), QueueFilter(mine=me, assignee="agent@kalra-plus.com"),
               QueueFilter(mine=me, overdue=True), QueueFilter(mine="agent@divikeys.com", status="all"),
               QueueFilter(mine="nobody@example.org", status="all")]
    seen: set[int] = set()
    for f in filters:
        for sort in ("due", "received", "updated"):
            for page, per_page in [(1, 50), (1, 3), (2, 3), (3, 3), (4, 3), (9, 3), (2, 5)]:
                with db.read_scope(app.engine) as s:
                    got = list_cases(s, app, f, page=page, per_page=per_page, sort=sort)
                want = _old_mine(app, f, page, per_page, sort)
                assert (got.total, [r.id for r in got.rows]) == want, (f, sort, page, per_page)
                seen.update(want[1])
    assert len(seen) > 10  # the mix was read: mine in both brands, the unassigned, closed ones
