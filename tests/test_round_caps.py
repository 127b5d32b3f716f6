"""A round's legal caps (mailbot.cases.rounds.caps) are worked out once per local day: the
same as working them out for each mail, at every hour of the year, across the changes of
time and month ends, with and without payment services."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta

import pytest

from mailbot import business_days
from mailbot.business_days import BusinessCalendar
from mailbot.cases import rounds
from mailbot.config import BrandConfig


def _per_mail(brand: BrandConfig, cal: BusinessCalendar, received_at: datetime) -> rounds.Caps:
    """The caps as they were worked out for each mail before (the reference)."""
    sla = brand.sla
    local = cal.local(received_at).date()
    month0 = local.month - 1 + sla.cap_months
    year, month = local.year + month0 // 12, month0 % 12 + 1
    latest = cal.end_of_day(date(year, month, min(local.day, calendar.monthrange(year, month)[1])))
    why = f"{sla.cap_months} months from receipt (ACPR)"
    reasons_from = None
    if sla.payment_services:
        payment_max = cal.add_business_days(received_at, sla.payment_days_max)
        if payment_max < latest:
            latest, why = payment_max, f"{sla.payment_days_max} business days for payment services (PSD2)"
        reasons_from = cal.add_business_days(received_at, sla.payment_days)
    return rounds.Caps(latest, why, reasons_from)


@pytest.mark.parametrize(("timezone", "sla"), [
    ("Europe/Paris", {}),
    ("Europe/Paris", {"payment_services": True}),
    ("Europe/Paris", {"payment_services": True, "cap_months": 1, "payment_days_max": 25}),
    ("America/Martinique", {"cap_months": 3}),
    ("Pacific/Kiritimati", {"payment_services": True}),
])
def test_the_caps_of_a_day_are_those_of_each_of_its_mails(timezone: str, sla: dict[str, object]) -> None:
    brand = BrandConfig(key="kp", name="KP", prefix="KP", addresses=["support@kp.example"], timezone=timezone,
                        sla=sla)
    cal = business_days.for_brand(brand)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for hour in range(0, 366 * 24, 1):
        received_at = start + timedelta(hours=hour, minutes=hour % 60)
        assert rounds.caps(brand, cal, received_at) == _per_mail(brand, cal, received_at), received_at
