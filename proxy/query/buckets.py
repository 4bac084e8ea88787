"""Time buckets aligned in a zone: where each bucket starts, and how its start is printed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from schemas.model import Interval

_FIXED_MINUTES = {"minute": 1, "fifteen_minute": 15, "thirty_minute": 30}
_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def _local_midnight(day: datetime) -> datetime:
    return day.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)


def _to_utc(local: datetime) -> datetime:
    return local.astimezone(UTC)


def _floor_fixed(instant: datetime, zone: ZoneInfo, minutes: int) -> datetime:
    # Elapsed minutes since local midnight: DST moves clocks by whole hours, so multiples of
    # 1, 15 and 30 minutes stay on local wall-clock marks on both sides of a change.
    midnight = _to_utc(_local_midnight(instant.astimezone(zone)))
    elapsed = (instant - midnight) // timedelta(minutes=minutes)
    return midnight + elapsed * timedelta(minutes=minutes)


def _floor_hour(instant: datetime, zone: ZoneInfo) -> datetime:
    local = instant.astimezone(zone)
    # replace() keeps `fold`, so the repeated autumn hour floors into its own bucket.
    return _to_utc(local.replace(minute=0, second=0, microsecond=0))


def _floor_calendar(instant: datetime, zone: ZoneInfo, granularity: str) -> datetime:
    local = _local_midnight(instant.astimezone(zone))
    if granularity == "week":
        local -= timedelta(days=local.weekday())
    elif granularity in _MONTHS:
        step = _MONTHS[granularity]
        local = local.replace(day=1, month=(local.month - 1) // step * step + 1)
    return _to_utc(local.replace(tzinfo=zone))


def _next_calendar(start: datetime, zone: ZoneInfo, granularity: str) -> datetime:
    local = start.astimezone(zone).replace(tzinfo=None)
    if granularity == "day":
        local += timedelta(days=1)
    elif granularity == "week":
        local += timedelta(days=7)
    else:
        months = local.month - 1 + _MONTHS[granularity]
        local = local.replace(year=local.year + months // 12, month=months % 12 + 1)
    return _to_utc(local.replace(tzinfo=zone))


def floor(instant: datetime, zone: ZoneInfo, granularity: str) -> datetime:
    """Start (UTC) of the bucket that holds `instant`."""
    if granularity in _FIXED_MINUTES:
        return _floor_fixed(instant, zone, _FIXED_MINUTES[granularity])
    if granularity == "hour":
        return _floor_hour(instant, zone)
    return _floor_calendar(instant, zone, granularity)


def _stepper(zone: ZoneInfo, granularity: str) -> Callable[[datetime], datetime]:
    if granularity in _FIXED_MINUTES:
        step = timedelta(minutes=_FIXED_MINUTES[granularity])
        return lambda start: start + step
    if granularity == "hour":
        return lambda start: start + timedelta(hours=1)
    return lambda start: _next_calendar(start, zone, granularity)


def iter_buckets(interval: Interval, granularity: str) -> Iterator[datetime]:
    """UTC starts of every bucket that intersects the interval, in order (`all`: one)."""
    start = interval.start.astimezone(UTC)
    if granularity == "all":
        yield start
        return
    step = _stepper(interval.time_zone, granularity)
    current = floor(start, interval.time_zone, granularity)
    end = interval.end.astimezone(UTC)
    while current < end:
        yield current
        current = step(current)


def format_timestamp(instant: datetime, zone: ZoneInfo) -> str:
    """`2019-01-01T00:00:00.000+02:00` in the zone, `Z` when the offset is zero."""
    local = instant.astimezone(zone)
    text = local.isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text
