"""The bench's own arithmetic: percentiles, interleaving, splitting a data set for Druid loads."""

from __future__ import annotations

import pytest

from bench.datasets import utc_week
from bench.stats import interleaved, percentile, summary


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 0.95, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        ([float(n) for n in range(1, 101)], 0.95, 95.0),
        ([float(n) for n in range(1, 101)], 0.99, 99.0),
        ([3.0, 1.0, 2.0], 1.0, 3.0),
    ],
)
def test_percentile_is_the_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_summary_of_a_sample() -> None:
    assert summary([1.0, 2.0, 3.0]) == {"n": 3, "median": 2.0, "p95": 3.0, "p99": 3.0, "max": 3.0}


def test_interleaved_rounds_rotate_who_goes_first() -> None:
    order: list[str] = []
    interleaved({name: (lambda name=name: order.append(name)) for name in "abc"}, rounds=3)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


@pytest.mark.parametrize(
    ("line", "week"),
    [
        (b'{"timestamp":"2019-06-30T23:59:59.999Z","organization_id":"x"}\n', "2019-W26"),
        (b'{"timestamp":"2018-12-31T00:00:00.000Z"}\n', "2019-W01"),
        (b'{"organization_id":"x","timestamp":"2019-07-01T01:30:00+02:00"}\n', "2019-W26"),
    ],
)
def test_a_session_goes_to_the_iso_week_of_its_utc_start(line: bytes, week: str) -> None:
    assert utc_week(line) == week


def test_new_bodies_are_one_query_in_more_distinct_bodies_than_the_parse_cache_holds() -> None:
    import orjson

    from bench.throughput import distinct_bodies
    from proxy.service.bodies import CACHED_BODIES, CACHED_BODY_BYTES

    payload = {"granularity": "day", "aggregations": [{"type": "count"}]}
    bodies = distinct_bodies(payload)
    assert len(set(bodies)) == len(bodies) > CACHED_BODIES
    assert all(orjson.loads(body) == payload for body in bodies)
    assert all(len(body) <= CACHED_BODY_BYTES for body in bodies)
