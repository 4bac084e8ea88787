"""Buckets aligned in a zone: floors, every start of an interval, and how a start is printed."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from proxy.query.buckets import floor, format_timestamp, iter_buckets
from schemas.model import Interval


def _printed(starts: list[datetime], zone: str) -> list[str]:
    return [format_timestamp(start, ZoneInfo(zone)) for start in starts]


# (granularity, zone, interval start, interval end, the printed bucket starts)
_INTERVALS = [
    pytest.param(
        "day",
        "Europe/Helsinki",
        "2019-03-30T00:00:00+02:00",
        "2019-04-01T00:00:00+03:00",
        ["2019-03-30T00:00:00.000+02:00", "2019-03-31T00:00:00.000+02:00"],
        id="day-dst-spring-23-hour-day",
    ),
    pytest.param(
        "day",
        "Europe/Helsinki",
        "2019-10-26T12:00:00+03:00",
        "2019-10-28T00:00:00+02:00",
        ["2019-10-26T00:00:00.000+03:00", "2019-10-27T00:00:00.000+03:00"],
        id="day-dst-autumn-25-hour-day",
    ),
    pytest.param(
        "hour",
        "Europe/Helsinki",
        "2019-10-27T02:30:00+03:00",
        "2019-10-27T05:00:00+02:00",
        [
            "2019-10-27T02:00:00.000+03:00",
            "2019-10-27T03:00:00.000+03:00",
            "2019-10-27T03:00:00.000+02:00",
            "2019-10-27T04:00:00.000+02:00",
        ],
        id="hour-dst-autumn-repeated-hour",
    ),
    pytest.param(
        "hour",
        "Europe/Helsinki",
        "2019-03-31T02:00:00+02:00",
        "2019-03-31T05:00:00+03:00",
        ["2019-03-31T02:00:00.000+02:00", "2019-03-31T04:00:00.000+03:00"],
        id="hour-dst-spring-skipped-hour",
    ),
    pytest.param(
        "fifteen_minute",
        "Asia/Kathmandu",
        "2019-03-01T10:20:00+05:45",
        "2019-03-01T11:00:00+05:45",
        ["2019-03-01T10:15:00.000+05:45", "2019-03-01T10:30:00.000+05:45", "2019-03-01T10:45:00.000+05:45"],
        id="fifteen-minute-kathmandu-quarter-to-offset",
    ),
    pytest.param(
        "thirty_minute",
        "Asia/Kolkata",
        "2019-03-01T00:10:00Z",
        "2019-03-01T01:00:00Z",
        ["2019-03-01T05:30:00.000+05:30", "2019-03-01T06:00:00.000+05:30"],
        id="thirty-minute-kolkata",
    ),
    pytest.param(
        "week",
        "UTC",
        "2019-03-06T12:00:00Z",
        "2019-03-19T00:00:00Z",
        ["2019-03-04T00:00:00.000Z", "2019-03-11T00:00:00.000Z", "2019-03-18T00:00:00.000Z"],
        id="week-starts-monday",
    ),
    pytest.param(
        "week",
        "America/New_York",
        "2019-03-08T00:00:00-05:00",
        "2019-03-12T00:00:00-04:00",
        ["2019-03-04T00:00:00.000-05:00", "2019-03-11T00:00:00.000-04:00"],
        id="week-across-dst",
    ),
    pytest.param(
        "quarter",
        "America/New_York",
        "2019-02-15T00:00:00-05:00",
        "2019-12-01T00:00:00-05:00",
        [
            "2019-01-01T00:00:00.000-05:00",
            "2019-04-01T00:00:00.000-04:00",
            "2019-07-01T00:00:00.000-04:00",
            "2019-10-01T00:00:00.000-04:00",
        ],
        id="quarter-floors-to-january",
    ),
    pytest.param(
        "year",
        "Europe/Helsinki",
        "2019-06-01T00:00:00+03:00",
        "2020-06-01T00:00:00+03:00",
        ["2019-01-01T00:00:00.000+02:00", "2020-01-01T00:00:00.000+02:00"],
        id="year",
    ),
    pytest.param(
        "all",
        "Europe/Helsinki",
        "2019-06-01T12:34:00Z",
        "2020-06-01T00:00:00Z",
        ["2019-06-01T15:34:00.000+03:00"],
        id="all-is-the-interval-start",
    ),
]


@pytest.mark.parametrize(("granularity", "zone", "start", "end", "expected"), _INTERVALS)
def test_bucket_starts_of_an_interval(
    granularity: str, zone: str, start: str, end: str, expected: list[str]
) -> None:
    interval = Interval(datetime.fromisoformat(start), datetime.fromisoformat(end), ZoneInfo(zone))
    assert _printed(list(iter_buckets(interval, granularity)), zone) == expected


# (granularity, zone, instant, the printed start of the bucket holding it)
_FLOORS = [
    ("minute", "UTC", "2019-03-01T10:20:59.999+00:00", "2019-03-01T10:20:00.000Z"),
    ("fifteen_minute", "Asia/Kathmandu", "2019-03-01T00:14:59+05:45", "2019-03-01T00:00:00.000+05:45"),
    ("hour", "Asia/Kathmandu", "2019-03-01T00:59:00+05:45", "2019-03-01T00:00:00.000+05:45"),
    ("day", "America/New_York", "2019-03-01T03:00:00+00:00", "2019-02-28T00:00:00.000-05:00"),
    ("week", "Europe/Helsinki", "2019-03-03T23:59:00+02:00", "2019-02-25T00:00:00.000+02:00"),
    ("month", "America/New_York", "2019-11-30T23:00:00-05:00", "2019-11-01T00:00:00.000-04:00"),
    ("quarter", "Europe/Helsinki", "2019-12-31T23:59:00+02:00", "2019-10-01T00:00:00.000+03:00"),
    ("year", "UTC", "2019-12-31T23:59:59+00:00", "2019-01-01T00:00:00.000Z"),
]


@pytest.mark.parametrize(("granularity", "zone", "instant", "expected"), _FLOORS)
def test_floor(granularity: str, zone: str, instant: str, expected: str) -> None:
    start = floor(datetime.fromisoformat(instant), ZoneInfo(zone), granularity)
    assert format_timestamp(start, ZoneInfo(zone)) == expected


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        ("2019-01-01T00:00:00+00:00", "UTC", "2019-01-01T00:00:00.000Z"),
        ("2019-01-01T00:00:00+00:00", "Europe/London", "2019-01-01T00:00:00.000Z"),
        ("2019-07-01T00:00:00+00:00", "Europe/London", "2019-07-01T01:00:00.000+01:00"),
        ("2019-01-01T00:00:00.123456+00:00", "Asia/Kathmandu", "2019-01-01T05:45:00.123+05:45"),
        ("2019-01-01T00:00:00+00:00", "America/St_Johns", "2018-12-31T20:30:00.000-03:30"),
    ],
)
def test_format_timestamp_prints_milliseconds_and_z_for_a_zero_offset(
    instant: str, zone: str, expected: str
) -> None:
    assert format_timestamp(datetime.fromisoformat(instant), ZoneInfo(zone)) == expected
