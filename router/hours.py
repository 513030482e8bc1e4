"""Business hours arithmetic, pure: callers pass `now`, so decisions replay identically later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from router.policy import BusinessHours

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local(hours: BusinessHours, now: datetime) -> datetime:
    """`now` in the hours' zone; naive datetimes are taken as UTC (that is what the store writes)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(_zone(hours.timezone))


def is_open(hours: BusinessHours | None, now: datetime) -> bool:
    """Overnight spans (open 22:00, close 06:00) belong to the day they open on."""
    if hours is None:
        return True
    t = local(hours, now)
    clock = t.time()
    if hours.open < hours.close:
        return t.weekday() in hours.days and hours.open <= clock < hours.close
    if clock >= hours.open:
        return t.weekday() in hours.days
    return (t.weekday() - 1) % 7 in hours.days and clock < hours.close


def describe(hours: BusinessHours, now: datetime) -> str:
    """'Sat 10:05 Europe/Berlin': the local time a lead reads on the card."""
    t = local(hours, now)
    return f"{_DAYS[t.weekday()]} {t:%H:%M} {hours.timezone}"


def next_open(hours: BusinessHours | None, now: datetime) -> datetime:
    """When humans are next at their desks (now, if open), in the hours' zone; used to tell a customer."""
    if hours is None or is_open(hours, now):
        return now
    t = local(hours, now)
    for offset in range(8):
        day = (t + timedelta(days=offset)).date()
        if day.weekday() not in hours.days:
            continue
        start = datetime.combine(day, hours.open, tzinfo=t.tzinfo)
        if start > t:
            return start
    return t  # unreachable with at least one open day; keeps the type total
