"""Business hours arithmetic, pure: callers pass `now`, so decisions replay identically later."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from router.policy import BusinessHours

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_ONE_DAY = timedelta(days=1)


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
    return open_at(hours, local(hours, now))


def open_at(hours: BusinessHours, t: datetime) -> bool:
    """`is_open` for a time already in the hours' zone (`local`), for callers that also `describe_local` it."""
    clock = t.time()
    if hours.open < hours.close:
        return t.weekday() in hours.days and hours.open <= clock < hours.close
    if clock >= hours.open:
        return t.weekday() in hours.days
    return (t.weekday() - 1) % 7 in hours.days and clock < hours.close


def describe(hours: BusinessHours, now: datetime) -> str:
    """'Sat 10:05 Europe/Berlin': the local time a lead reads on the card."""
    return describe_local(hours, local(hours, now))


def describe_local(hours: BusinessHours, t: datetime) -> str:
    """`describe` for a time already in the hours' zone (`local`). The fields rather than `%H:%M`: strftime
    cost four times as much, on every decision made while the desk is closed."""
    return f"{_DAYS[t.weekday()]} {t.hour:02d}:{t.minute:02d} {hours.timezone}"


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
"""How many days `add_open_time` walks; whole weeks in between are jumped, so any valid policy ends within it."""


def _span(hours: BusinessHours, day: date) -> tuple[float, float] | None:
    """The staffed span that opens on `day` (unix seconds), if it is a working day."""
    return _span_of(hours.timezone, hours.days, hours.open, hours.close, day)


@lru_cache(maxsize=4096)
def _span_of(timezone: str, days: tuple[int, ...], opens: time, closes: time, day: date) -> tuple[float, float] | None:
    """Built from wall-clock times in the zone, so a span across a daylight-saving change is as long as it
    really is. Cached on plain values (hashing the policy model cost more than the span): every message's SLA
    plan asks for the same few days."""
    if day.weekday() not in days:
        return None
    zone = _zone(timezone)
    closes_on = day if opens < closes else day + timedelta(days=1)
    return (datetime.combine(day, opens, tzinfo=zone).timestamp(),
            datetime.combine(closes_on, closes, tzinfo=zone).timestamp())


def _open_per_week(hours: BusinessHours, day: date) -> float:
    spans = (_span(hours, day + timedelta(days=i)) for i in range(7))
    return sum(end - begin for begin, end in (s for s in spans if s is not None))


def add_open_time(hours: BusinessHours | None, start: float, seconds: float) -> float:
    """The instant `seconds` of staffed time after `start` (unix seconds): an SLA clock that stops while
    the desk is closed, so a message sent on Saturday night is not escalated to the leads at 2 a.m. but
    25 working minutes after Monday's opening. Without hours, plain addition.

    Whole weeks of open time are jumped rather than walked (a week of DST change counted as a usual one),
    so a desk open one hour a week still meets a 7-day SLA in the right order, at once.

    >>> from datetime import time
    >>> weekdays = BusinessHours(timezone="UTC", days=(0, 1, 2, 3, 4), open=time(9), close=time(17))
    >>> friday_4pm = datetime(2026, 1, 2, 16, tzinfo=UTC).timestamp()
    >>> datetime.fromtimestamp(add_open_time(weekdays, friday_4pm, 2 * 3600), UTC).strftime("%a %H:%M")
    'Mon 10:00'
    >>> saturdays = BusinessHours(timezone="UTC", days=(5,), open=time(9), close=time(10))
    >>> datetime.fromtimestamp(add_open_time(saturdays, friday_4pm, 7 * 86400), UTC).strftime("%Y-%m-%d %H:%M")
    '2029-03-17 10:00'
    """
    if hours is None or seconds <= 0:
        return start + max(seconds, 0.0)
    left = seconds
    # The span's inputs read once rather than through `_span` on every day walked: this runs for every
    # deadline of every message, and the walk's constant costs were most of it.
    zone, days, opens_at, closes_at = hours.timezone, hours.days, hours.open, hours.close
    day = datetime.fromtimestamp(start, _zone(zone)).date() - _ONE_DAY  # overnight spans
    for walked in range(SEARCH_DAYS):
        span = _span_of(zone, days, opens_at, closes_at, day)
        day += _ONE_DAY
        if span is None or span[1] <= start:
            continue
        opens = max(span[0], start)
        if opens + left <= span[1]:
            return opens + left
        left -= span[1] - opens
        if walked >= 14 and left > 2 * (week := _open_per_week(hours, day)):  # past `start`: jump whole weeks
            skip = int(left // week) - 1
            day += timedelta(days=7 * skip)
            left -= skip * week
    return start + seconds
