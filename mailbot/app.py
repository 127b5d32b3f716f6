"""The application context handed to every edge: config, database, clock, calendars, templates."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property

from sqlalchemy import Engine

from mailbot import db
from mailbot.cases import business_days
from mailbot.cases.business_days import BusinessCalendar
from mailbot.config import BrandConfig, Config
from mailbot.outgoing.templating import Renderer


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class App:
    config: Config
    engine: Engine
    clock: Callable[[], datetime] = system_clock
    # Set when the daemon stops: long jobs (the dispatcher's backlog) end early, their work left for later.
    stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def open(cls, config: Config, *, upgrade: bool | None = None,
             clock: Callable[[], datetime] = system_clock) -> App:
        """Connect to the configured database, migrating it when allowed."""
        engine = db.make_engine(config.database_url(), busy_timeout=config.database.busy_timeout)
        if upgrade if upgrade is not None else config.database.auto_upgrade:
            db.upgrade(engine)
        return cls(config=config, engine=engine, clock=clock)

    def now(self) -> datetime:
        return self.clock()

    @cached_property
    def renderer(self) -> Renderer:
        return Renderer(self.config.resolve_path(self.config.templates_dir), zones=self.config.zones())

    @staticmethod
    def compiled_renderer(config: Config) -> Renderer:
        """A renderer of `config`'s templates with every one of them compiled now: a file
        edited later is not read until the next reload. Raises TemplateError."""
        renderer = Renderer(config.resolve_path(config.templates_dir), zones=config.zones())
        renderer.compile_all(config.brands)
        return renderer

    def reconfigure(self, config: Config, renderer: Renderer) -> None:
        """Use a new config from now on (SIGHUP), with its templates compiled."""
        self.config = config
        self.__dict__["renderer"] = renderer
        self.warm_calendars()

    def calendar(self, brand: BrandConfig | str) -> BusinessCalendar:
        return business_days.for_brand(self.config.brand(brand) if isinstance(brand, str) else brand)

    def warm_up(self) -> None:
        """Build now what the first mail would otherwise wait for: each brand's calendar,
        with this year's and next year's public holidays."""
        self.warm_calendars()

    def warm_calendars(self) -> None:
        """Each brand's calendar, with this year's and next year's public holidays."""
        year = self.now().year
        for brand in self.config.brands:
            cal = self.calendar(brand)
            for y in (year, year + 1):
                cal.holiday_name(date(y, 1, 1))

    def close(self) -> None:
        self.engine.dispose()  # (with the connection mailbot.cases.references keeps for case numbers)
