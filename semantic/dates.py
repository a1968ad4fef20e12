"""Calendar arithmetic of time filters, in local time (the query's timezone).

A filter value is a local date (a whole day) or a local date-time (an instant); a time
condition selects the local range ``[lo, hi)``. Time intelligence moves those bounds:
``compare`` shifts them back by one period, ``toDate`` and ``rolling`` widen them so a
window has the rows it needs before (or after) the filtered range.

Months differ in length, so a shift by months follows PostgreSQL (``t - interval '1
month'`` clamps to the month's last day) with one exception: an *exclusive end* that lands
past the end of a shorter month moves to the first day of the next month instead of
clamping back, so the shifted range keeps its last day (1-28 March compares with all of
February, 1-30 May with all of April, 1-28 February 2024 with all of February 2023).

Bounds outside the years 1-9999 are refused (``CalendarOverflow``; the checks turn it into
BAD_USER_INPUT naming the member) rather than failing deep inside ``datetime``.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from typing import assert_never

from semantic.model import Granularity
from semantic.query import Condition, Op, Value

EPSILON = timedelta(microseconds=1)
TIME_OPS = (Op.IN_DATE_RANGE, Op.NOT_IN_DATE_RANGE, Op.BEFORE_DATE, Op.AFTER_DATE)


class CalendarOverflow(ValueError):
    """A bound before 0001-01-01 or after 9999-12-31 (Python's, and this API's, calendar)."""


def parse_when(text: Value) -> tuple[datetime, datetime] | None:
    """``[start, end)`` in local time of a date (its day) or a date-time (that instant);
    None when ``text`` is neither. Raises ``CalendarOverflow`` for the last day of 9999."""
    if not isinstance(text, str):
        return None
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            start = datetime(d.year, d.month, d.day)
            return start, _add(start, timedelta(days=1))
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        if isinstance(exc, CalendarOverflow):
            raise
        return None
    if moment.tzinfo is not None:
        return None
    return moment, _add(moment, EPSILON)


def time_bounds(cond: Condition) -> tuple[datetime | None, datetime | None]:
    """The local ``[lo, hi)`` a time condition selects (``notInDateRange``: its complement).

    Call only on a checked condition."""
    spans = [parse_when(v) for v in cond.values]
    first, last = spans[0], spans[-1]
    assert first is not None and last is not None
    match cond.op:
        case Op.IN_DATE_RANGE | Op.NOT_IN_DATE_RANGE:
            return first[0], last[1]
        case Op.BEFORE_DATE:
            return None, first[0]
        case Op.AFTER_DATE:
            return first[1], None
        case _:
            raise ValueError(cond.op)


def _add(t: datetime, delta: timedelta) -> datetime:
    try:
        return t + delta
    except OverflowError:
        raise CalendarOverflow(f"{t.isoformat()} moved by {delta} leaves years 1-9999") from None


def _months(t: datetime, months: int) -> tuple[int, int]:
    y, m = divmod(t.year * 12 + t.month - 1 + months, 12)
    if not 1 <= y <= 9999:
        raise CalendarOverflow(f"{t.isoformat()} moved by {months} months leaves years 1-9999")
    return y, m + 1


def move(t: datetime, months: int = 0, days: int = 0) -> datetime:
    """``t + interval 'months months days days'`` as PostgreSQL computes it: the months
    first (a day past the month's end clamps to its last day), then the days."""
    if months:
        y, m = _months(t, months)
        t = t.replace(year=y, month=m, day=min(t.day, calendar.monthrange(y, m)[1]))
    return _add(t, timedelta(days=days))


def move_end(t: datetime, months: int = 0, days: int = 0) -> datetime:
    """``move`` for an exclusive end: a day past the target month's end becomes the first
    instant of the next month (the range keeps its last day) instead of clamping back."""
    if months:
        y, m = _months(t, months)
        if t.day > calendar.monthrange(y, m)[1]:
            y, m = _months(datetime(y, m, 1), 1)
            t = datetime(y, m, 1)
        else:
            t = t.replace(year=y, month=m)
    return _add(t, timedelta(days=days))


def truncate(gran: Granularity, t: datetime) -> datetime:
    """``date_trunc(gran, t)`` (weeks start on Monday)."""
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    match gran:
        case Granularity.VALUE:
            return t
        case Granularity.DAY:
            return day
        case Granularity.WEEK:
            try:
                return day - timedelta(days=day.weekday())
            except OverflowError:
                raise CalendarOverflow(
                    f"the week of {day.date()} starts before 0001-01-01"
                ) from None
        case Granularity.MONTH:
            return day.replace(day=1)
        case Granularity.QUARTER:
            return day.replace(day=1, month=(day.month - 1) // 3 * 3 + 1)
        case Granularity.YEAR:
            return day.replace(day=1, month=1)
        case _:
            assert_never(gran)


def span(gran: Granularity) -> tuple[int, int]:
    """One bucket of ``gran`` as (months, days)."""
    match gran:
        case Granularity.DAY:
            return 0, 1
        case Granularity.WEEK:
            return 0, 7
        case Granularity.MONTH:
            return 1, 0
        case Granularity.QUARTER:
            return 3, 0
        case Granularity.YEAR:
            return 12, 0
        case Granularity.VALUE:
            raise ValueError("a raw timestamp has no span")
        case _:
            assert_never(gran)


def interval(months: int, days: int) -> str:
    """The SQL interval literal of (months, days), e.g. ``1 year``, ``3 months``, ``7 days``."""

    def unit(n: int, name: str) -> str:
        return f"{n} {name}" + ("" if n == 1 else "s")

    parts = []
    if months:
        parts.append(unit(months // 12, "year") if months % 12 == 0 else unit(months, "month"))
    if days or not parts:
        parts.append(unit(days, "day"))
    return " ".join(parts)
