"""The application context handed to every edge: config, database, clock, calendars, and what
the floors above make of the config (the compiled templates: mailbot.outgoing.templating.renderer)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import Engine

from mailbot import business_days, db
from mailbot.business_days import BusinessCalendar
from mailbot.config import BrandConfig, Config


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class App:
    config: Config
    engine: Engine
    clock: Callable[[], datetime] = system_clock
    # Set when the daemon stops: long jobs (the dispatcher's backlog) end early, their work left for later.
    stopping: threading.Event = field(default_factory=threading.Event)
    # What the floors above make of the config, by class (mailbot.outgoing.templating keeps its
    # Renderer here): held for them, dropped when the config changes (reconfigure).
    derived: dict[type, object] = field(default_factory=dict)

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

    def reconfigure(self, config: Config, derived: Mapping[type, object]) -> None:
        """Use a new config from now on (SIGHUP), with what was made of it (its compiled
        templates); anything else made of the old config is made again when next asked for."""
        self.derived = dict(derived)
        self.config = config
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
