"""A new case whose acknowledgement goes is written acknowledged (responses.first_answer,
records.open_case's `acknowledged_at`) instead of written new and updated a moment later:
the same rows either way (SQLite's search index included), on the bench's mails and the
corpora, and no UPDATE of the case."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from bench.gen_mails import generate_bytes
from mailbot.app import App
from mailbot.cases import responses
from mailbot.ingest.pipeline import Received, ingest, ingest_batch
from tests.conftest import ZAMMAD_MAILS
from tests.mails import mail

CORPORA = [Path(__file__).parent / "corpora" / name for name in ("talon", "synthetic")]
BRAND = "kalra-plus"
RESENT = "Bonjour,\nmon virement de 1 250,00 € du 3 novembre 2026 n'est toujours pas arrivé sur mon compte.\nMarie"
# Values drawn at random (a case's reply token, our Message-IDs) or from the system clock
# (a blob's time, a sent mail's record) differ from one run to the other whatever the path.
RANDOM = {"cases": {"reply_token", "created_at"}, "outbox": {"message_id"}, "messages": {"message_id", "created_at"},
          "blobs": {"created_at"}}
TABLES = ("cases", "rounds", "messages", "events", "outbox", "inbound", "attachments", "quarantine", "blobs",
          "cases_fts_data", "cases_fts_docsize", "messages_fts_data", "messages_fts_docsize")  # (SQLite's search index)


def _corpus() -> list[bytes]:
    assert ZAMMAD_MAILS.is_dir(), f"{ZAMMAD_MAILS} is missing: the Zammad corpus is read from ../shared (present in CI)"
    folders = [*CORPORA, ZAMMAD_MAILS]
    return [p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.suffix in (".eml", ".box")]


def _mails() -> tuple[list[bytes], bytes]:
    """The bench's mails with a complaint and its resend among them; a second resend."""
    raws = generate_bytes(120)
    raws[60:60] = [mail(frm="Marie <marie@example.org>", message_id="<a@example.org>", body=RESENT),
                   mail(frm="Marie <marie@example.org>", message_id="<b@example.org>", body="Pour rappel :\n" + RESENT)]
    return raws, mail(frm="Marie <marie@example.org>", message_id="<c@example.org>", body="Encore :\n" + RESENT)


def _receive(app: App, mails: tuple[list[bytes], bytes]) -> None:
    """The bench's mails in IMAP batches, then the resend alone and every corpus mail one by one."""
    raws, resent = mails
    for start in range(0, len(raws), 50):
        ingest_batch(app, [Received(raw, "imap:bench", mailbox_brand=BRAND) for raw in raws[start:start + 50]])
    ingest(app, resent, "smtp")
    for raw in _corpus():
        ingest(app, raw, "corpus", mailbox_brand=BRAND)


def _rows(app: App) -> dict[str, list[dict[str, Any]]]:
    with app.engine.connect() as conn:
        return {table: [{k: v for k, v in row._mapping.items() if k not in RANDOM.get(table, ())}
                        for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1"))] for table in TABLES}


def _updates_of_cases(app: App, receive: Callable[[App], None]) -> int:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(app.engine, "before_cursor_execute", note)
    try:
        receive(app)
    finally:
        event.remove(app.engine, "before_cursor_execute", note)
    return sum(s.startswith("UPDATE cases") for s in seen)


@pytest.mark.slow  # the corpora
@pytest.mark.usefixtures("quiet_logs")
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_new_case_written_acknowledged_is_the_case_written_new_then_acknowledged(
        make_app: Callable[..., App], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mails = _mails()
    written_acknowledged = make_app()
    _receive(written_acknowledged, mails)
    with monkeypatch.context() as m:  # as before: nothing decided ahead, the case updated by acknowledge
        m.setattr(responses, "first_answer", lambda *_args, **_kw: None)
        updated = make_app(url=f"sqlite:///{tmp_path}/updated.db")
        _receive(updated, mails)
    got, expected = _rows(written_acknowledged), _rows(updated)
    assert len(expected["cases"]) > 150 and {c["status"] for c in expected["cases"]} >= {"acknowledged", "new"}
    assert any(e["type"] == "probable_duplicate" for e in expected["events"])
    for table in TABLES:
        for a, b in zip(got[table], expected[table], strict=True):
            assert a == b, (table, {k: (a[k], b[k]) for k in a if a[k] != b[k]})


def test_the_bench_mails_open_their_cases_without_an_update(app: App) -> None:
    raws = generate_bytes(100)
    assert _updates_of_cases(app, lambda a: ingest_batch(a, [Received(r, "imap:bench") for r in raws])) == 0
