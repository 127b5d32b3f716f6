"""full-text search of cases: SQLite FTS5 tables kept by triggers; PostgreSQL GIN indexes

SQLite: `messages_fts` (subject, body of every message, notes included) and
`cases_fts` (reference, customer name and address, subject) are FTS5 tables whose
content is the `messages` and `cases` rows themselves (external content), kept in
step by triggers: the write path's prepared INSERTs need no change. (A later
migration that rebuilds `messages` or `cases` in batch mode drops these triggers:
it must create them again; tests/test_search.py checks they exist at head.)

PostgreSQL: GIN indexes on `to_tsvector('simple', …)` of the same columns, lower-cased,
with French accents taken off and `- . / _ @` made spaces by `translate` (immutable,
so it can be indexed; the `unaccent` extension would need a superuser): words split
as SQLite's tokenizer splits them ("MOB-4711" is "mob" and "4711", not "-4711"). The query must spell the same
expression to use them: mailbot.cases.search.PG_MESSAGE_DOC / PG_CASE_DOC.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 07:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ACCENTED = "àáâãäåçèéêëìíîïñòóôõöùúûüýÿœæ-./_@"
PLAIN = "aaaaaaceeeeiiiinooooouuuuyyoa     "
PG_MESSAGE_DOC = (f"to_tsvector('simple'::regconfig, translate(lower(subject || ' ' || body_text), "
                  f"'{ACCENTED}', '{PLAIN}'))")
PG_CASE_DOC = (f"to_tsvector('simple'::regconfig, translate(lower(ref || ' ' || customer_name || ' ' || "
               f"customer_email || ' ' || subject), '{ACCENTED}', '{PLAIN}'))")
TOKENIZE = "tokenize = 'unicode61 remove_diacritics 2'"

SQLITE_UP = [
    f"CREATE VIRTUAL TABLE messages_fts USING fts5(subject, body_text, content='messages', "
    f"content_rowid='id', {TOKENIZE})",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, subject, body_text) VALUES (new.id, new.subject, new.body_text); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, subject, body_text) "
    "VALUES ('delete', old.id, old.subject, old.body_text); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, body_text ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, subject, body_text) "
    "VALUES ('delete', old.id, old.subject, old.body_text); "
    "INSERT INTO messages_fts(rowid, subject, body_text) VALUES (new.id, new.subject, new.body_text); END",
    f"CREATE VIRTUAL TABLE cases_fts USING fts5(ref, customer_name, customer_email, subject, "
    f"content='cases', content_rowid='id', {TOKENIZE})",
    "CREATE TRIGGER cases_fts_insert AFTER INSERT ON cases BEGIN "
    "INSERT INTO cases_fts(rowid, ref, customer_name, customer_email, subject) "
    "VALUES (new.id, new.ref, new.customer_name, new.customer_email, new.subject); END",
    "CREATE TRIGGER cases_fts_delete AFTER DELETE ON cases BEGIN "
    "INSERT INTO cases_fts(cases_fts, rowid, ref, customer_name, customer_email, subject) "
    "VALUES ('delete', old.id, old.ref, old.customer_name, old.customer_email, old.subject); END",
    "CREATE TRIGGER cases_fts_update AFTER UPDATE OF ref, customer_name, customer_email, subject ON cases BEGIN "
    "INSERT INTO cases_fts(cases_fts, rowid, ref, customer_name, customer_email, subject) "
    "VALUES ('delete', old.id, old.ref, old.customer_name, old.customer_email, old.subject); "
    "INSERT INTO cases_fts(rowid, ref, customer_name, customer_email, subject) "
    "VALUES (new.id, new.ref, new.customer_name, new.customer_email, new.subject); END",
    # the rows already there
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    "INSERT INTO cases_fts(cases_fts) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    *(f"DROP TRIGGER IF EXISTS {t}_fts_{what}" for t in ("messages", "cases")
      for what in ("insert", "delete", "update")),
    "DROP TABLE IF EXISTS messages_fts",
    "DROP TABLE IF EXISTS cases_fts",
]
PG_UP = [
    f"CREATE INDEX ix_messages_search ON messages USING gin ({PG_MESSAGE_DOC})",
    f"CREATE INDEX ix_cases_search ON cases USING gin ({PG_CASE_DOC})",
]
PG_DOWN = ["DROP INDEX IF EXISTS ix_messages_search", "DROP INDEX IF EXISTS ix_cases_search"]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_UP if sqlite else PG_UP:
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_DOWN if sqlite else PG_DOWN:
        op.execute(statement)
