"""The intervals `compare` names: previous period and previous year on a zone's wall clock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo as zone

import pytest

from schemas.model import Interval
from schemas.periods import COMPARISONS, previous_period, previous_year, resolve_wall_time
from schemas.vocabulary import COMPARE_PERIODS


def _interval(start: str, end: str, name: str) -> Interval:
    return Interval(datetime.fromisoformat(start), datetime.fromisoformat(end), zone(name))


def _printed(interval: Interval) -> tuple[str, str]:
    tz = interval.time_zone
    return interval.start.astimezone(tz).isoformat(), interval.end.astimezone(tz).isoformat()


@pytest.mark.parametrize(
    ("start", "end", "name", "expected"),
    [
        # Whole local days: a week across a DST change stays 7 local days (167 or 169 hours).
        (
            "2019-03-25T00:00:00+02:00",
            "2019-04-01T00:00:00+03:00",
            "Europe/Helsinki",
            ("2019-03-18T00:00:00+02:00", "2019-03-25T00:00:00+02:00"),
        ),
        (
            "2019-04-01T00:00:00+03:00",
            "2019-04-08T00:00:00+03:00",
            "Europe/Helsinki",
            ("2019-03-25T00:00:00+02:00", "2019-04-01T00:00:00+03:00"),
        ),
        (
            "2019-11-04T00:00:00-05:00",
            "2019-11-11T00:00:00-05:00",
            "America/New_York",
            ("2019-10-28T00:00:00-04:00", "2019-11-04T00:00:00-05:00"),
        ),
        (
            "2019-03-10T00:00:00-08:00",
            "2019-03-11T00:00:00-07:00",
            "America/Los_Angeles",
            ("2019-03-09T00:00:00-08:00", "2019-03-10T00:00:00-08:00"),
        ),
        # A calendar month is its number of days: March (31) → the 31 days before it.
        (
            "2019-03-01T00:00:00Z",
            "2019-04-01T00:00:00Z",
            "UTC",
            ("2019-01-29T00:00:00+00:00", "2019-03-01T00:00:00+00:00"),
        ),
        # Not both ends at local midnight: the same absolute duration (22 hours here).
        (
            "2019-03-31T00:00:00+02:00",
            "2019-03-31T23:00:00+03:00",
            "Europe/Helsinki",
            ("2019-03-30T02:00:00+02:00", "2019-03-31T00:00:00+02:00"),
        ),
        (
            "2019-06-01T12:30:00Z",
            "2019-06-01T14:00:00Z",
            "UTC",
            ("2019-06-01T11:00:00+00:00", "2019-06-01T12:30:00+00:00"),
        ),
        # Midnights of another zone are not this zone's midnights.
        (
            "2019-06-01T00:00:00Z",
            "2019-06-02T00:00:00Z",
            "Europe/Helsinki",
            ("2019-05-31T03:00:00+03:00", "2019-06-01T03:00:00+03:00"),
        ),
    ],
)
def test_previous_period(start: str, end: str, name: str, expected: tuple[str, str]) -> None:
    assert _printed(previous_period(_interval(start, end, name))) == expected


@pytest.mark.parametrize(
    ("start", "end", "name", "expected"),
    [
        # February 29 becomes February 28.
        (
            "2020-02-29T00:00:00+02:00",
            "2020-03-01T00:00:00+02:00",
            "Europe/Helsinki",
            ("2019-02-28T00:00:00+02:00", "2019-03-01T00:00:00+02:00"),
        ),
        (
            "2024-02-01T00:00:00Z",
            "2024-03-01T00:00:00Z",
            "UTC",
            ("2023-02-01T00:00:00+00:00", "2023-03-01T00:00:00+00:00"),
        ),
        (
            "2024-02-29T10:15:00Z",
            "2024-02-29T18:00:00Z",
            "UTC",
            ("2023-02-28T10:15:00+00:00", "2023-02-28T18:00:00+00:00"),
        ),
        # The same wall clock across a different offset (summer then, winter now is not needed).
        (
            "2020-03-29T00:00:00+02:00",
            "2020-04-05T00:00:00+03:00",
            "Europe/Helsinki",
            ("2019-03-29T00:00:00+02:00", "2019-04-05T00:00:00+03:00"),
        ),
        # 03:30 on 2019-03-31 does not exist in Helsinki: the end of the gap, 04:00.
        (
            "2020-03-31T03:30:00+03:00",
            "2020-03-31T05:00:00+03:00",
            "Europe/Helsinki",
            ("2019-03-31T04:00:00+03:00", "2019-03-31T05:00:00+03:00"),
        ),
        # 03:30 on 2019-10-27 happens twice in Helsinki: the first, still at +03:00.
        (
            "2020-10-27T03:30:00+02:00",
            "2020-10-27T05:00:00+02:00",
            "Europe/Helsinki",
            ("2019-10-27T03:30:00+03:00", "2019-10-27T05:00:00+02:00"),
        ),
        # 02:30 on 2019-03-10 does not exist in New York: 03:00 EDT.
        (
            "2020-03-10T02:30:00-04:00",
            "2020-03-10T04:00:00-04:00",
            "America/New_York",
            ("2019-03-10T03:00:00-04:00", "2019-03-10T04:00:00-04:00"),
        ),
    ],
)
def test_previous_year(start: str, end: str, name: str, expected: tuple[str, str]) -> None:
    assert _printed(previous_year(_interval(start, end, name))) == expected


@pytest.mark.parametrize(
    ("wall", "name", "expected"),
    [
        ("2019-06-01T12:00:00", "Europe/Helsinki", "2019-06-01T09:00:00+00:00"),
        ("2019-03-31T03:00:00", "Europe/Helsinki", "2019-03-31T01:00:00+00:00"),  # gap start
        ("2019-03-31T03:59:59.999000", "Europe/Helsinki", "2019-03-31T01:00:00+00:00"),  # gap end
        ("2019-10-27T03:00:00", "Europe/Helsinki", "2019-10-27T00:00:00+00:00"),  # first of two
        ("2019-10-27T04:00:00", "Europe/Helsinki", "2019-10-27T02:00:00+00:00"),  # after the repeat
        ("2019-04-07T01:45:00", "Australia/Lord_Howe", "2019-04-06T14:45:00+00:00"),  # 30-minute DST
        ("2019-03-31T01:15:00", "Europe/London", "2019-03-31T01:00:00+00:00"),
    ],
)
def test_resolve_wall_time(wall: str, name: str, expected: str) -> None:
    assert resolve_wall_time(datetime.fromisoformat(wall), zone(name)).isoformat() == expected


def test_every_compare_period_has_its_interval() -> None:
    assert set(COMPARISONS) == set(COMPARE_PERIODS)
