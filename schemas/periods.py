"""The interval a `compare` names: the previous period or the previous year of a query's interval.

Both work on the wall clock of the interval's zone. A wall time the zone skips (a spring DST
gap) or repeats (the autumn hour) becomes the earliest instant at or after it that the zone
really shows: the end of the gap, or the first of the two repeats.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from schemas.model import Interval

_MICROSECOND = timedelta(microseconds=1)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _shows(instant: datetime, zone: ZoneInfo, wall: datetime) -> bool:
    return _wall(instant, zone) == wall


def resolve_wall_time(wall: datetime, zone: ZoneInfo) -> datetime:
    """The earliest UTC instant whose wall-clock time in `zone` is `wall` or, in a gap, after it."""
    candidates = sorted(wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    shown = [instant for instant in candidates if _shows(instant, zone, wall)]
    if shown:
        return shown[0]
    # In a gap: the two readings straddle the change; the change itself is the answer.
    before, after = candidates
    while after - before > _MICROSECOND:
        middle = before + (after - before) // 2
        if _wall(middle, zone) >= wall:
            after = middle
        else:
            before = middle
    return after


def _is_local_midnight(instant: datetime, zone: ZoneInfo) -> bool:
    return _wall(instant, zone).time() == time(0)


def _local_days_earlier(instant: datetime, zone: ZoneInfo, days: int) -> datetime:
    day = _wall(instant, zone).date() - timedelta(days=days)
    return resolve_wall_time(datetime.combine(day, time(0)), zone)


def previous_period(interval: Interval) -> Interval:
    """The interval as long as this one that ends where it starts: whole local days when both
    ends are local midnights, else the same absolute duration."""
    zone = interval.time_zone
    if _is_local_midnight(interval.start, zone) and _is_local_midnight(interval.end, zone):
        days = (_wall(interval.end, zone).date() - _wall(interval.start, zone).date()).days
        start = _local_days_earlier(interval.start, zone, days)
    else:
        start = interval.start - (interval.end - interval.start)
    return Interval(start.astimezone(UTC), interval.start.astimezone(UTC), zone)


def _year_earlier(instant: datetime, zone: ZoneInfo) -> datetime:
    wall = _wall(instant, zone)
    day = wall.date()
    # February 29 has no match a year earlier: it becomes February 28.
    earlier = date(day.year - 1, day.month, min(day.day, 28) if (day.month, day.day) == (2, 29) else day.day)
    return resolve_wall_time(datetime.combine(earlier, wall.time()), zone)


def previous_year(interval: Interval) -> Interval:
    """Both ends one calendar year earlier on the zone's wall clock."""
    zone = interval.time_zone
    return Interval(_year_earlier(interval.start, zone), _year_earlier(interval.end, zone), zone)


# `compare` name → the interval it names for a query's interval (see schemas.vocabulary).
COMPARISONS: dict[str, Callable[[Interval], Interval]] = {
    "previous_period": previous_period,
    "previous_year": previous_year,
}
