"""The pages' Jinja2 environment, with the mail templates' sandbox rules: a sandboxed,
immutable environment, `StrictUndefined`, and autoescape on for every page, so a
customer's or a file's text is shown as text, never run as HTML or script."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mailbot.outgoing.templating import format_date, format_datetime

TEMPLATES = Path(__file__).with_name("templates")


def _local(value: datetime | None, tz: str) -> datetime | None:
    return value.astimezone(ZoneInfo(tz)) if value else None


def _when(value: datetime | None, tz: str, language: str) -> str:
    """A time in the brand's zone with the zone's name, as the mails give it:
    "… à 14:00 (heure de Paris)" (`templating.zone_label`)."""
    local = _local(value, tz)
    if local is None:
        return "—"
    return format_datetime(local, language, tz)


def _day(value: datetime | None, tz: str, language: str) -> str:
    local = _local(value, tz)
    return format_date(local, language) if local else "—"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


@cache
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["day"] = _day
    env.filters["size"] = _size
    return env


def render_page(name: str, context: dict[str, Any]) -> str:
    return environment().get_template(name).render(context)
