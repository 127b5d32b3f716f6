"""Business-day deadlines: every expected date below was counted by hand on a calendar.

Bank Kalra-plus: Europe/Paris, holidays FR.  Platform Divikeys: America/Marigot
(UTC-4 all year), holidays FR + subdiv MF (adds 28 May and 21 July).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot import business_days
from mailbot.business_days import BusinessCalendar

PARIS = ZoneInfo("Europe/Paris")
MARIGOT = ZoneInfo("America/Marigot")


def paris(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=PARIS)


def marigot(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=MARIGOT)


@pytest.fixture
def bank() -> BusinessCalendar:
    return BusinessCalendar("Europe/Paris", "FR")


@pytest.fixture
def platform() -> BusinessCalendar:
    return BusinessCalendar("America/Marigot", "FR", subdiv="MF")


def assert_utc(dt: datetime) -> None:
    assert dt.tzinfo is not None and dt.utcoffset() == timedelta(0)


# -- the calendar the hand-counted dates rely on ------------------------------

FR_HOLIDAYS_USED = [
    date(2026, 4, 6),  # Easter Monday
    date(2026, 5, 1),  # Friday
    date(2026, 5, 8),  # Friday
    date(2026, 5, 14),  # Ascension, Thursday
    date(2026, 5, 25),  # Whit Monday
    date(2026, 7, 14),  # Tuesday
    date(2026, 12, 25),  # Christmas, Friday
    date(2027, 1, 1),  # Friday
]
MF_ONLY = [date(2026, 5, 28), date(2026, 7, 21)]  # Thursday, Tuesday


def test_holidays_package_agrees_with_hand_calendar() -> None:
    fr = holidays.country_holidays("FR", years=[2026, 2027])
    mf = holidays.country_holidays("FR", subdiv="MF", years=[2026, 2027])
    for d in FR_HOLIDAYS_USED:
        assert d in fr and d in mf, d
    for d in MF_ONLY:
        assert d not in fr and d in mf, d
    assert date(2026, 12, 25).strftime("%a") == "Fri"
    assert date(2027, 1, 1).strftime("%a") == "Fri"
    assert date(2026, 5, 28).strftime("%a") == "Thu"
    assert date(2026, 7, 21).strftime("%a") == "Tue"
    assert date(2026, 4, 3) not in fr  # Good Friday: Alsace-Moselle only


def test_is_business_day_and_holiday_name(
    bank: BusinessCalendar, platform: BusinessCalendar
) -> None:
    for d in FR_HOLIDAYS_USED:
        assert not bank.is_business_day(d) and not platform.is_business_day(d)
        assert bank.holiday_name(d)
    for d in MF_ONLY:
        assert bank.is_business_day(d)
        assert bank.holiday_name(d) is None
        assert not platform.is_business_day(d)
    assert platform.holiday_name(date(2026, 7, 21)) == "Victor Schoelcher Day"
    assert platform.holiday_name(date(2026, 5, 28)) == "Abolition of Slavery"
    assert not bank.is_business_day(date(2026, 11, 28))  # Saturday
    assert not bank.is_business_day(date(2026, 11, 29))  # Sunday
    assert bank.is_business_day(date(2026, 11, 30))  # Monday
    assert bank.holiday_name(date(2026, 11, 30)) is None


def test_unknown_subdivision_fails_fast() -> None:
    with pytest.raises(NotImplementedError):
        BusinessCalendar("Europe/Paris", "FR", subdiv="XX")


def test_local_treats_naive_as_utc(bank: BusinessCalendar) -> None:
    assert bank.local(datetime(2026, 7, 1, 10, 0)) == paris(2026, 7, 1, 12, 0)
    assert bank.local(datetime(2026, 7, 1, 10, 0)).tzinfo == PARIS


# -- add_business_days ---------------------------------------------------------


def test_docstring_example(bank: BusinessCalendar) -> None:
    # Wed 25 Nov: Thu 26, Fri 27, Mon 30, Tue 1, Wed 2
    due = bank.add_business_days(paris(2026, 11, 25, 10, 0), 5)
    assert due == paris(2026, 12, 2, 23, 59, 59)
    assert due == datetime(2026, 12, 2, 22, 59, 59, tzinfo=UTC)
    assert_utc(due)


def test_platform_15_days_from_23_december(platform: BusinessCalendar) -> None:
    # Thu 24 (1), [Fri 25 Christmas], Mon 28 - Thu 31 (2-5), [Fri 1 Jan],
    # Mon 4 - Fri 8 (6-10), Mon 11 - Fri 15 (11-15)
    due = platform.add_business_days(marigot(2026, 12, 23, 10, 0), 15)
    assert due == marigot(2027, 1, 15, 23, 59, 59)
    assert due == datetime(2027, 1, 16, 3, 59, 59, tzinfo=UTC)
    assert_utc(due)


def test_friday_before_whit_monday(bank: BusinessCalendar, platform: BusinessCalendar) -> None:
    # bank: [Mon 25 Whit], Tue 26, Wed 27, Thu 28, Fri 29, Mon 1 Jun
    assert bank.add_business_days(paris(2026, 5, 22, 10, 0), 5) == paris(2026, 6, 1, 23, 59, 59)
    # platform also skips Thu 28 May (abolition of slavery): ... Fri 29, Mon 1, Tue 2 Jun
    assert platform.add_business_days(marigot(2026, 5, 22, 10, 0), 5) == marigot(
        2026, 6, 2, 23, 59, 59
    )


def test_7_may_before_8_may_and_ascension(bank: BusinessCalendar) -> None:
    received = paris(2026, 5, 7, 16, 0)  # Thursday
    # [Fri 8], Mon 11, Tue 12, Wed 13, [Thu 14 Ascension], Fri 15, Mon 18
    assert bank.add_business_days(received, 5) == paris(2026, 5, 18, 23, 59, 59)
    # Tue 19, Wed 20, Thu 21, Fri 22, [Mon 25 Whit], Tue 26, Wed 27, Thu 28, Fri 29,
    # Mon 1 Jun, Tue 2 Jun
    assert bank.add_business_days(received, 15) == paris(2026, 6, 2, 23, 59, 59)


def test_received_friday_2330_paris(bank: BusinessCalendar) -> None:
    received = paris(2026, 11, 27, 23, 30)  # 22:30 UTC, still Friday everywhere
    # Friday does not count: Mon 30, Tue 1, Wed 2, Thu 3, Fri 4
    assert bank.add_business_days(received, 5) == paris(2026, 12, 4, 23, 59, 59)
    assert bank.add_business_days(received, 1) == paris(2026, 11, 30, 23, 59, 59)
    # 00:30 Paris on Saturday is still Friday 23:30 UTC: the Paris date rules.
    saturday = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    assert bank.local(saturday).date() == date(2026, 11, 28)
    assert bank.add_business_days(saturday, 1) == paris(2026, 11, 30, 23, 59, 59)
    assert bank.add_business_days(saturday, 5) == paris(2026, 12, 4, 23, 59, 59)


def test_received_on_sunday(bank: BusinessCalendar) -> None:
    received = paris(2026, 11, 29, 10, 0)
    # Mon 30, Tue 1, Wed 2, Thu 3, Fri 4
    assert bank.add_business_days(received, 5) == paris(2026, 12, 4, 23, 59, 59)
    assert bank.add_business_days(received, 1) == paris(2026, 11, 30, 23, 59, 59)


def test_bank_30_days_across_christmas_and_new_year(bank: BusinessCalendar) -> None:
    # From Mon 14 Dec: Tue 15 - Fri 18 (1-4), Mon 21 - Thu 24 (5-8), [Fri 25],
    # Mon 28 - Thu 31 (9-12), [Fri 1 Jan], Mon 4 - Fri 8 (13-17), Mon 11 - Fri 15 (18-22),
    # Mon 18 - Fri 22 (23-27), Mon 25 - Wed 27 (28-30)
    due = bank.add_business_days(paris(2026, 12, 14, 9, 0), 30)
    assert due == paris(2027, 1, 27, 23, 59, 59)
    assert due == datetime(2027, 1, 27, 22, 59, 59, tzinfo=UTC)


def test_saint_martin_only_holiday_21_july(
    bank: BusinessCalendar, platform: BusinessCalendar
) -> None:
    # received Mon 20 July 2026
    assert bank.add_business_days(paris(2026, 7, 20, 10, 0), 1) == paris(2026, 7, 21, 23, 59, 59)
    assert platform.add_business_days(marigot(2026, 7, 20, 10, 0), 1) == marigot(
        2026, 7, 22, 23, 59, 59
    )
    # bank: Tue 21, Wed 22, Thu 23, Fri 24, Mon 27 / platform: Wed 22 ... Tue 28
    assert bank.add_business_days(paris(2026, 7, 20, 10, 0), 5) == paris(2026, 7, 27, 23, 59, 59)
    assert platform.add_business_days(marigot(2026, 7, 20, 10, 0), 5) == marigot(
        2026, 7, 28, 23, 59, 59
    )
    # 14 July (Tuesday) counts for neither
    assert bank.add_business_days(paris(2026, 7, 13, 10, 0), 1) == paris(2026, 7, 15, 23, 59, 59)
    assert platform.add_business_days(marigot(2026, 7, 13, 10, 0), 1) == marigot(
        2026, 7, 15, 23, 59, 59
    )


def test_near_midnight_in_marigot_is_next_day_in_utc(platform: BusinessCalendar) -> None:
    received = marigot(2026, 11, 26, 22, 30)  # Thursday local, Friday 02:30 UTC
    assert received.astimezone(UTC).date() == date(2026, 11, 27)
    # counted from Thursday: Fri 27, Mon 30, Tue 1, Wed 2, Thu 3
    due = platform.add_business_days(received, 5)
    assert due == marigot(2026, 12, 3, 23, 59, 59)
    assert due == datetime(2026, 12, 4, 3, 59, 59, tzinfo=UTC)
    assert platform.add_business_days(received, 1) == datetime(2026, 11, 28, 3, 59, 59, tzinfo=UTC)
    # the same instant given as naive UTC
    assert platform.add_business_days(datetime(2026, 11, 27, 2, 30), 5) == due


def test_closed_days_from_config() -> None:
    closed = BusinessCalendar(
        "Europe/Paris", "FR", closed_days=[date(2026, 12, 24), date(2026, 12, 31)]
    )
    open_ = BusinessCalendar("Europe/Paris", "FR")
    received = paris(2026, 12, 23, 10, 0)
    # open: Thu 24, Mon 28, Tue 29, Wed 30, Thu 31
    assert open_.add_business_days(received, 5) == paris(2026, 12, 31, 23, 59, 59)
    # closed: [24], [25], Mon 28, Tue 29, Wed 30, [31], [1 Jan], Mon 4, Tue 5
    assert closed.add_business_days(received, 5) == paris(2027, 1, 5, 23, 59, 59)
    assert not closed.is_business_day(date(2026, 12, 24))
    assert closed.holiday_name(date(2026, 12, 24)) is None


def test_n_zero(bank: BusinessCalendar) -> None:
    assert bank.add_business_days(paris(2026, 11, 25, 10, 0), 0) == paris(2026, 11, 25, 23, 59, 59)
    assert bank.add_business_days(paris(2026, 11, 28, 10, 0), 0) == paris(2026, 11, 30, 23, 59, 59)
    assert bank.add_business_days(paris(2026, 12, 25, 10, 0), 0) == paris(2026, 12, 28, 23, 59, 59)


def test_negative_n_rejected(bank: BusinessCalendar) -> None:
    with pytest.raises(ValueError):
        bank.add_business_days(paris(2026, 11, 25), -1)


# -- add_business_hours --------------------------------------------------------


def test_bank_ack_24_business_hours_over_weekend(bank: BusinessCalendar) -> None:
    due = bank.add_business_hours(paris(2026, 11, 27, 15, 0), 24)  # Friday
    assert due == paris(2026, 11, 30, 15, 0)
    assert_utc(due)
    assert bank.add_business_hours(paris(2026, 11, 27, 15, 0), 48) == paris(2026, 12, 1, 15, 0)
    # from Saturday: Monday 00:00 + 24 h
    assert bank.add_business_hours(paris(2026, 11, 28, 10, 0), 24) == paris(2026, 12, 1, 0, 0)
    assert bank.add_business_hours(paris(2026, 11, 28, 10, 0), 48) == paris(2026, 12, 2, 0, 0)


def test_business_hours_across_holidays(bank: BusinessCalendar, platform: BusinessCalendar) -> None:
    # Thu 24 Dec 15:00: 9 h on Thursday, skip Fri 25 + weekend, 15 h on Monday
    assert bank.add_business_hours(paris(2026, 12, 24, 15, 0), 24) == paris(2026, 12, 28, 15, 0)
    assert bank.add_business_hours(paris(2026, 12, 24, 15, 0), 48) == paris(2026, 12, 29, 15, 0)
    # Friday before Whit Monday
    assert bank.add_business_hours(paris(2026, 5, 22, 15, 0), 24) == paris(2026, 5, 26, 15, 0)
    assert bank.add_business_hours(paris(2026, 5, 22, 15, 0), 48) == paris(2026, 5, 27, 15, 0)
    # Wed 27 May 10:00, 48 h: the platform skips Thu 28 (14 h Wed + 24 h Fri + 10 h Mon)
    assert platform.add_business_hours(marigot(2026, 5, 27, 10, 0), 48) == marigot(
        2026, 6, 1, 10, 0
    )
    assert bank.add_business_hours(paris(2026, 5, 27, 10, 0), 48) == paris(2026, 5, 29, 10, 0)


def test_business_hours_edges(bank: BusinessCalendar) -> None:
    friday_late = paris(2026, 11, 27, 23, 30)
    assert bank.add_business_hours(friday_late, 0.5) == paris(2026, 11, 28, 0, 0)
    assert bank.add_business_hours(friday_late, 1) == paris(2026, 11, 30, 0, 30)
    assert bank.add_business_hours(friday_late, 0) == friday_late
    assert bank.add_business_hours(paris(2026, 11, 28, 10, 0), 0) == paris(2026, 11, 30, 0, 0)
    # DST ends Sun 25 Oct 2026; Monday midnight is CET again
    assert bank.add_business_hours(paris(2026, 10, 24, 10, 0), 24) == paris(2026, 10, 27, 0, 0)
    with pytest.raises(ValueError):
        bank.add_business_hours(friday_late, -1)


# -- business_days_between -----------------------------------------------------


def test_business_days_between(bank: BusinessCalendar, platform: BusinessCalendar) -> None:
    start, end = paris(2026, 12, 23, 10, 0), paris(2027, 1, 5, 12, 0)
    # Thu 24, Mon 28, Tue 29, Wed 30, Thu 31, Mon 4, Tue 5
    assert bank.business_days_between(start, end) == 7
    assert bank.business_days_between(end, start) == -7
    assert bank.business_days_between(start, paris(2026, 12, 23, 22, 0)) == 0
    assert bank.business_days_between(start, paris(2026, 12, 27, 22, 0)) == 1
    # 20 July -> 22 July: bank counts Tue 21 and Wed 22, the platform only Wed 22
    assert bank.business_days_between(paris(2026, 7, 20, 9), paris(2026, 7, 22, 9)) == 2
    assert platform.business_days_between(marigot(2026, 7, 20, 9), marigot(2026, 7, 22, 9)) == 1


# -- cache ----------------------------------------------------------------------


def test_holidays_computed_once_per_year(monkeypatch: pytest.MonkeyPatch) -> None:
    cal = BusinessCalendar("Europe/Paris", "FR")
    calls: list[object] = []
    real = holidays.country_holidays

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("years"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(business_days.holidays, "country_holidays", counting)
    for _ in range(3):
        cal.add_business_days(paris(2026, 12, 14, 9, 0), 30)
    assert calls == [2026, 2027]


# -- properties ------------------------------------------------------------------

CALENDARS = [
    BusinessCalendar("Europe/Paris", "FR"),
    BusinessCalendar("America/Marigot", "FR", subdiv="MF"),
    BusinessCalendar("Europe/Paris", "FR", closed_days=[date(2026, 12, 24), date(2026, 8, 14)]),
]
instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(cal=st.sampled_from(CALENDARS), received=instants, n=st.integers(1, 60))
def test_deadline_properties(cal: BusinessCalendar, received: datetime, n: int) -> None:
    due = cal.add_business_days(received, n)
    assert_utc(due)
    local_due = cal.local(due)
    assert cal.is_business_day(local_due.date())
    assert (local_due.hour, local_due.minute, local_due.second) == (23, 59, 59)
    assert due > received
    assert cal.add_business_days(received, n + 1) > due
    assert cal.business_days_between(received, due) == n


@settings(max_examples=200, deadline=None)
@given(cal=st.sampled_from(CALENDARS), received=instants, hours=st.integers(1, 200))
def test_business_hours_properties(cal: BusinessCalendar, received: datetime, hours: int) -> None:
    due = cal.add_business_hours(received, hours)
    assert_utc(due)
    assert due >= received + timedelta(hours=hours)
    assert cal.add_business_hours(received, hours + 1) > due


# -- opening hours: when staff mail and holding replies go out, urgent first-response deadlines --

_OPEN, _CLOSE = time(9), time(18)


@pytest.mark.parametrize(("at", "expected"), [
    ("2026-12-07T10:30:00+01:00", "2026-12-07T10:30:00+01:00"),  # Monday, open: as is
    ("2026-12-07T07:00:00+01:00", "2026-12-07T09:00:00+01:00"),  # before opening
    ("2026-12-07T18:00:00+01:00", "2026-12-08T09:00:00+01:00"),  # at closing: next morning
    ("2026-12-05T11:00:00+01:00", "2026-12-07T09:00:00+01:00"),  # Saturday
    ("2026-12-24T20:00:00+01:00", "2026-12-28T09:00:00+01:00"),  # Christmas Eve evening, Christmas, weekend
])
def test_working_moment(at: str, expected: str) -> None:
    cal = BusinessCalendar("Europe/Paris")
    assert cal.local(cal.working_moment(datetime.fromisoformat(at), _OPEN, _CLOSE)).isoformat() == expected


@pytest.mark.parametrize(("start", "hours", "expected"), [
    ("2026-12-07T10:00:00+01:00", 4, "2026-12-07T14:00:00+01:00"),
    ("2026-12-04T17:30:00+01:00", 4, "2026-12-07T12:30:00+01:00"),  # Friday evening: Monday
    ("2026-12-05T03:00:00+01:00", 9, "2026-12-07T18:00:00+01:00"),  # a whole working day
])
def test_add_working_hours(start: str, hours: float, expected: str) -> None:
    cal = BusinessCalendar("Europe/Paris")
    got = cal.add_working_hours(datetime.fromisoformat(start), hours, _OPEN, _CLOSE)
    assert cal.local(got).isoformat() == expected
