"""Business-day arithmetic for complaint deadlines (pure: no I/O, no config).

What the product promises (these rules are tested in tests/test_business_days.py):

* Every instant given to this module is an aware ``datetime``; a naive one is
  taken as UTC.  All calendar reasoning happens in the brand's timezone
  (``BusinessCalendar.timezone``), and every computed deadline is returned as an
  aware datetime in UTC.
* A *business day* is a local calendar date that is not a Saturday or Sunday,
  not a public holiday of ``country``/``subdiv`` according to the ``holidays``
  package (e.g. ``FR``; ``FR`` + ``subdiv="MF"`` for Saint-Martin, which adds
  28 May and 21 July), and not one of the brand's ``closed_days``.
* ``add_business_days(received_at, n)``: the day of receipt never counts, even
  when it is a business day.  The deadline is the END of the n-th business day
  after the local day of receipt, i.e. 23:59:59 local time on that day.
  Example: received Wed 2026-11-25 10:00 Paris, n=5 -> Wed 2026-12-02
  23:59:59 Paris.  ``n=0`` means the end of the day of receipt if it is a
  business day, else the end of the next business day.  ``n < 0`` is an error.
* ``add_business_hours(received_at, hours)``: the clock only runs during
  business days, all 24 hours of them (midnight to midnight local, real elapsed
  time, so a DST day counts 23 or 25 hours); non-business days are skipped
  entirely.  24 business hours from Friday 15:00 -> Monday 15:00 (Friday and
  Monday business days); from Saturday 10:00 -> Tuesday 00:00 (Monday 00:00 +
  24 h).  A delay that ends exactly at midnight ends at that midnight (it is
  not pushed over the following non-business days).  ``hours=0`` on a
  non-business day gives the start of the next business day.  ``hours < 0``
  is an error.
* ``business_days_between(start, end)``: the number of business days d with
  local(start).date() < d <= local(end).date() -- the same counting as
  ``add_business_days``, so for n >= 1
  ``business_days_between(r, add_business_days(r, n)) == n``.  It is negative
  (minus the reverse count) when ``end`` is before ``start``.

Holidays are computed once per year and kept per instance as a set of dates, so
``is_business_day`` is O(1) after the first use of a year.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import holidays

if TYPE_CHECKING:
    from mailbot.config import BrandConfig

__all__ = ["BusinessCalendar", "END_OF_DAY"]

END_OF_DAY = time(23, 59, 59)
_ONE_DAY = timedelta(days=1)
_SATURDAY = 5


def _as_aware(dt: datetime) -> datetime:
    """Return ``dt`` unchanged if aware, else the same wall time taken as UTC."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        return dt.replace(tzinfo=UTC)
    return dt


def for_brand(brand: BrandConfig) -> BusinessCalendar:
    """The brand's calendar, one per process and set of settings (shared by the daemon's
    App and the analysis workers), so its holiday and deadline caches are built once; a
    reload that changes the settings gets a new one."""
    return _shared(brand.timezone, brand.holidays_country, brand.holidays_subdiv, tuple(brand.closed_days))


@lru_cache(maxsize=64)
def _shared(timezone: str, country: str, subdiv: str | None, closed_days: tuple[date, ...]) -> BusinessCalendar:
    return BusinessCalendar(timezone, country, subdiv, closed_days)


class BusinessCalendar:
    """Business days of one brand: weekends, public holidays and closed days."""

    def __init__(
        self,
        timezone: str,
        country: str = "FR",
        subdiv: str | None = None,
        closed_days: Iterable[date] = (),
    ) -> None:
        self.timezone = timezone
        self.tz = ZoneInfo(timezone)
        self.country = country
        self.subdiv = subdiv
        self.closed_days: frozenset[date] = frozenset(_to_date(d) for d in closed_days)
        # Fail fast on an unknown country/subdivision (raises NotImplementedError).
        holidays.country_holidays(country, subdiv=subdiv, years=())
        self._holidays_by_year: dict[int, dict[date, str]] = {}
        self._deadlines: dict[tuple[date, int], datetime] = {}  # add_business_days

    def __repr__(self) -> str:
        return (
            f"BusinessCalendar({self.timezone!r}, {self.country!r}, subdiv={self.subdiv!r}, "
            f"closed_days={len(self.closed_days)})"
        )

    # -- calendar ---------------------------------------------------------------

    def _holidays(self, year: int) -> dict[date, str]:
        cached = self._holidays_by_year.get(year)
        if cached is None:
            hols = holidays.country_holidays(self.country, subdiv=self.subdiv, years=year)
            cached = {d: name for d, name in hols.items() if d.year == year}
            self._holidays_by_year[year] = cached
        return cached

    def holiday_name(self, d: date) -> str | None:
        """Name of the public holiday on ``d``, or None (closed days are not holidays)."""
        d = _to_date(d)
        return self._holidays(d.year).get(d)

    def is_business_day(self, d: date) -> bool:
        """Not a Saturday/Sunday, not a public holiday, not a closed day."""
        d = _to_date(d)
        if d.weekday() >= _SATURDAY or d in self.closed_days:
            return False
        return d not in self._holidays(d.year)

    def next_business_day(self, d: date) -> date:
        """First business day strictly after ``d``."""
        d += _ONE_DAY
        while not self.is_business_day(d):
            d += _ONE_DAY
        return d

    # -- time zones -------------------------------------------------------------

    def local(self, dt: datetime) -> datetime:
        """``dt`` (naive = UTC) converted to the calendar's timezone."""
        return _as_aware(dt).astimezone(self.tz)

    def _local_midnight_utc(self, d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=self.tz).astimezone(UTC)

    def end_of_day(self, d: date) -> datetime:
        """23:59:59 local on ``d``, as aware UTC."""
        return datetime.combine(d, END_OF_DAY, tzinfo=self.tz).astimezone(UTC)

    # -- deadlines --------------------------------------------------------------

    def add_business_days(self, received_at: datetime, n: int) -> datetime:
        """End (23:59:59 local) of the n-th business day after the day of receipt, in UTC."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        start = self.local(received_at).date()
        found = self._deadlines.get((start, n))
        if found is not None:  # every mail of a day shares its deadlines
            return found
        day = start
        if n == 0:
            if not self.is_business_day(day):
                day = self.next_business_day(day)
        for _ in range(n):
            day = self.next_business_day(day)
        if len(self._deadlines) >= 4096:
            self._deadlines.clear()
        found = self._deadlines[(start, n)] = self.end_of_day(day)
        return found

    def add_business_hours(self, received_at: datetime, hours: float) -> datetime:
        """``hours`` of business time after ``received_at`` (weekends/holidays skipped), in UTC."""
        if hours < 0:
            raise ValueError(f"hours must be >= 0, got {hours}")
        remaining = timedelta(hours=hours)
        cursor = _as_aware(received_at).astimezone(UTC)
        day = self.local(cursor).date()
        while True:
            if not self.is_business_day(day):
                day = self.next_business_day(day)
                cursor = self._local_midnight_utc(day)
            day_end = self._local_midnight_utc(day + _ONE_DAY)
            available = day_end - cursor
            if remaining <= available:
                return cursor + remaining
            remaining -= available
            cursor = day_end
            day += _ONE_DAY

    def working_moment(self, dt: datetime, opening: time, closing: time) -> datetime:
        """``dt`` if it falls within opening hours of a business day, else the next opening
        (staff reminders and customers' holding replies: never on a Sunday or at 3 a.m.)."""
        local = self.local(dt)
        day = local.date()
        if self.is_business_day(day) and opening <= local.time() < closing:
            return dt
        if not (self.is_business_day(day) and local.time() < opening):
            day = self.next_business_day(day)
        return datetime.combine(day, opening, tzinfo=self.tz).astimezone(UTC)

    def add_working_hours(self, start: datetime, hours: float, opening: time, closing: time) -> datetime:
        """``hours`` of opening hours of business days after ``start`` (an urgent case's
        first-response deadline: 4 working hours from Friday 17:00, opening 09:00-18:00,
        is Monday 12:00)."""
        remaining = timedelta(hours=hours)
        cursor = self.working_moment(start, opening, closing)
        while True:
            local = self.local(cursor)
            day_close = datetime.combine(local.date(), closing, tzinfo=self.tz).astimezone(UTC)
            if remaining <= day_close - cursor:
                return cursor + remaining
            remaining -= day_close - cursor
            cursor = self.working_moment(day_close, opening, closing)

    def business_days_between(self, start: datetime, end: datetime) -> int:
        """Business days d with local(start).date() < d <= local(end).date() (negative if reversed)."""
        first = self.local(start).date()
        last = self.local(end).date()
        if last < first:
            return -self._count_after(last, first)
        return self._count_after(first, last)

    def _count_after(self, first: date, last: date) -> int:
        count = 0
        day = first + _ONE_DAY
        while day <= last:
            count += self.is_business_day(day)
            day += _ONE_DAY
        return count


def _to_date(d: date) -> date:
    """Accept a ``datetime`` where a ``date`` is expected (its own date part)."""
    return d.date() if isinstance(d, datetime) else d
