"""Every text column has a bound, and a value is held to it before the write.

PostgreSQL refuses a value longer than its column (`StringDataRightTruncation`: the
mail was quarantined, no case) where SQLite stores it whole; so the bound is applied
here, in Python, the same on both. `bound_text_columns` gives every string column of
the models the type `Bounded`: a value over the column's length is cut to it, its last
character an ellipsis ("…"), and a warning names the column and the lengths (never the
value). It works for every write path (ORM, Core statements, `Prepared`'s INSERTs, which
keep SQLAlchemy's bind processors) and for the values of a WHERE clause alike.

Where a cut value would be wrong rather than short — an address — the entry point
checks it first (`senders.valid_address`: 254 characters at most) and refuses it
cleanly; the bound here is what stops any other path from failing on PostgreSQL.
A column without a length in the schema (a message's text) gets `UNBOUNDED_TEXT`.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import MetaData, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel.sql.sqltypes import AutoString

log = logging.getLogger("mailbot.db")

UNBOUNDED_TEXT = 1_000_000  # characters kept of a column without a length (the raw mail stays whole)
ELLIPSIS = "…"


class Bounded(TypeDecorator[str]):
    """A string column of at most `limit` characters, cut before the write."""

    impl = AutoString
    cache_ok = True

    def __init__(self, length: int | None = None, *, limit: int | None = None, column: str = "") -> None:
        super().__init__(length=length)
        self.limit = limit or length or UNBOUNDED_TEXT
        self.column = column

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or len(value) <= self.limit:
            return value
        log.warning("a value of %s cut from %d to %d characters", self.column, len(value), self.limit,
                    extra={"event": "db.value_cut", "column": self.column, "length": len(value),
                           "limit": self.limit})
        return value[:self.limit - 1] + ELLIPSIS


def bound_text_columns(metadata: MetaData) -> None:
    """Give every string column of `metadata` the type `Bounded` (its own length kept)."""
    for table in metadata.tables.values():
        for column in table.columns:
            kind = column.type
            if isinstance(kind, (String, AutoString)) and not isinstance(kind, Bounded):
                length = kind.impl.length if isinstance(kind, AutoString) else kind.length  # type: ignore[attr-defined]
                column.type = Bounded(length, column=f"{table.name}.{column.name}")


def text_column_bounds(metadata: MetaData) -> dict[str, int | None]:
    """`table.column` → the bound its values are held to (None: a string column without one)."""
    return {f"{t.name}.{c.name}": (c.type.limit if isinstance(c.type, Bounded) else None)
            for t in metadata.tables.values() for c in t.columns
            if isinstance(c.type, (String, AutoString, Bounded))}
