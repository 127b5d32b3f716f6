"""Alembic environment: migrations run on the connection mailbot hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import mailbot.models  # noqa: F401  (registers the tables)
from mailbot.db import mapped_name

target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from sqlalchemy import create_engine

        engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
        with engine.begin() as conn:
            _run(conn)
        return
    _run(connection)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_name=mapped_name,
        version_table_schema=None,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
