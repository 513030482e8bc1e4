"""Business hours arithmetic, pure: callers pass `now`, so decisions replay identically later."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
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


SEARCH_DAYS = 3 * 366
"""How far `add_open_time` looks ahead; any real week reaches the longest SLA well within it."""


def _span(hours: BusinessHours, day: date) -> tuple[float, float] | None:
    """The staffed span that opens on `day` (unix seconds), if it is a working day. Built from wall-clock
    times in the zone, so a span across a daylight-saving change is as long as it really is."""
    if day.weekday() not in hours.days:
        return None
    zone = _zone(hours.timezone)
    closes_on = day if hours.open < hours.close else day + timedelta(days=1)
    return (datetime.combine(day, hours.open, tzinfo=zone).timestamp(),
            datetime.combine(closes_on, hours.close, tzinfo=zone).timestamp())


def add_open_time(hours: BusinessHours | None, start: float, seconds: float) -> float:
    """The instant `seconds` of staffed time after `start` (unix seconds): an SLA clock that stops while
    the desk is closed, so a message sent on Saturday night is not escalated to the leads at 2 a.m. but
    ten working minutes after Monday's opening. Without hours, plain addition.

    >>> from datetime import time
    >>> weekdays = BusinessHours(timezone="UTC", days=(0, 1, 2, 3, 4), open=time(9), close=time(17))
    >>> friday_4pm = datetime(2026, 1, 2, 16, tzinfo=UTC).timestamp()
    >>> datetime.fromtimestamp(add_open_time(weekdays, friday_4pm, 2 * 3600), UTC).strftime("%a %H:%M")
    'Mon 10:00'
    """
    if hours is None or seconds <= 0:
        return start + max(seconds, 0.0)
    left = seconds
    day = datetime.fromtimestamp(start, _zone(hours.timezone)).date() - timedelta(days=1)  # overnight spans
    for _ in range(SEARCH_DAYS):
        span = _span(hours, day)
        day += timedelta(days=1)
        if span is None or span[1] <= start:
            continue
        opens = max(span[0], start)
        if opens + left <= span[1]:
            return opens + left
        left -= span[1] - opens
    return start + seconds
