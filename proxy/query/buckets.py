"""Time buckets aligned in a zone: where each bucket starts, and how its start is printed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from schemas.model import Interval
from schemas.vocabulary import GRANULARITY_SPECS, BucketUnit


def _local_midnight(day: datetime) -> datetime:
    return day.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)


def _to_utc(local: datetime) -> datetime:
    return local.astimezone(UTC)


def _wall_clock(start: datetime, zone: ZoneInfo) -> datetime:
    return start.astimezone(zone).replace(tzinfo=None)


def _floor_minutes(instant: datetime, zone: ZoneInfo, minutes: int) -> datetime:
    # Elapsed minutes since local midnight: DST moves clocks by whole hours, so multiples of
    # 1, 15 and 30 minutes stay on local wall-clock marks on both sides of a change.
    midnight = _to_utc(_local_midnight(instant.astimezone(zone)))
    elapsed = (instant - midnight) // timedelta(minutes=minutes)
    return midnight + elapsed * timedelta(minutes=minutes)


def _floor_hours(instant: datetime, zone: ZoneInfo, hours: int) -> datetime:
    local = instant.astimezone(zone)
    # replace() keeps `fold`, so the repeated autumn hour floors into its own bucket.
    return _to_utc(local.replace(hour=local.hour // hours * hours, minute=0, second=0, microsecond=0))


def _floor_days(instant: datetime, zone: ZoneInfo, _days: int) -> datetime:
    return _to_utc(_local_midnight(instant.astimezone(zone)))


def _floor_weeks(instant: datetime, zone: ZoneInfo, _weeks: int) -> datetime:
    midnight = _local_midnight(instant.astimezone(zone)).replace(tzinfo=None)
    return _to_utc((midnight - timedelta(days=midnight.weekday())).replace(tzinfo=zone))


def _floor_months(instant: datetime, zone: ZoneInfo, months: int) -> datetime:
    midnight = _local_midnight(instant.astimezone(zone))
    first = midnight.replace(day=1, month=(midnight.month - 1) // months * months + 1)
    return _to_utc(first)


def _add_minutes(start: datetime, zone: ZoneInfo, minutes: int) -> datetime:
    return start + timedelta(minutes=minutes)


def _add_hours(start: datetime, zone: ZoneInfo, hours: int) -> datetime:
    return start + timedelta(hours=hours)


def _add_days(start: datetime, zone: ZoneInfo, days: int) -> datetime:
    # On the wall clock: a local day is 23 or 25 hours long across a DST change.
    return _to_utc((_wall_clock(start, zone) + timedelta(days=days)).replace(tzinfo=zone))


def _add_weeks(start: datetime, zone: ZoneInfo, weeks: int) -> datetime:
    return _add_days(start, zone, 7 * weeks)


def _add_months(start: datetime, zone: ZoneInfo, months: int) -> datetime:
    local = _wall_clock(start, zone)
    total = local.month - 1 + months
    return _to_utc(local.replace(year=local.year + total // 12, month=total % 12 + 1, tzinfo=zone))


# (instant or bucket start, zone, bucket size in the unit) → a UTC instant.
_Move = Callable[[datetime, ZoneInfo, int], datetime]


class Alignment(NamedTuple):
    """How buckets of one unit align: the start of the bucket holding an instant, and the next start."""

    floor: _Move
    step: _Move


# Every unit but `all`, whose one bucket is the interval itself.
ALIGNMENTS: dict[BucketUnit, Alignment] = {
    BucketUnit.MINUTES: Alignment(_floor_minutes, _add_minutes),
    BucketUnit.HOURS: Alignment(_floor_hours, _add_hours),
    BucketUnit.DAYS: Alignment(_floor_days, _add_days),
    BucketUnit.WEEKS: Alignment(_floor_weeks, _add_weeks),
    BucketUnit.MONTHS: Alignment(_floor_months, _add_months),
}


def floor(instant: datetime, zone: ZoneInfo, granularity: str) -> datetime:
    """Start (UTC) of the bucket that holds `instant`."""
    spec = GRANULARITY_SPECS[granularity]
    return ALIGNMENTS[spec.unit].floor(instant, zone, spec.count)


def iter_buckets(interval: Interval, granularity: str) -> Iterator[datetime]:
    """UTC starts of every bucket that intersects the interval, in order (`all`: one)."""
    start = interval.start.astimezone(UTC)
    spec = GRANULARITY_SPECS[granularity]
    if spec.unit is BucketUnit.ALL:
        yield start
        return
    zone, alignment = interval.time_zone, ALIGNMENTS[spec.unit]
    current = alignment.floor(start, zone, spec.count)
    end = interval.end.astimezone(UTC)
    while current < end:
        yield current
        current = alignment.step(current, zone, spec.count)


def format_timestamp(instant: datetime, zone: ZoneInfo) -> str:
    """`2019-01-01T00:00:00.000+02:00` in the zone, `Z` when the offset is zero."""
    local = instant.astimezone(zone)
    text = local.isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text
