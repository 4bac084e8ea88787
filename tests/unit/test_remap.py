"""Druid rows → public response: zero-fill, time zones, ordering, top-N, the row cap."""

from __future__ import annotations

import random
from typing import Any

import pytest

from proxy.backends.druid.backend import plan_rows
from proxy.backends.druid.translator import translate
from proxy.errors import ResultTooLarge
from proxy.result import _ordered, _sort_keys, plan_result, render
from schemas.request import QuerySchema
from tests.unit.golden import cases


def _respond(request: dict[str, Any], druid_rows: list[Any], max_rows: int = 100) -> Any:
    plan = plan_result(QuerySchema().load(request), max_buckets=10_000, max_rows=max_rows)
    return render(plan, plan_rows(druid_rows, translate(plan, "org", "visitor_sessions", "q", 1000), plan))


@pytest.mark.parametrize("case", cases("remap"))
def test_remap(case: dict[str, Any]) -> None:
    assert _respond(case["request"], case["druid_rows"]) == case["response"]


def test_result_over_the_row_cap_is_refused() -> None:
    request = {
        "interval": {"start": "2019-03-01T00:00:00Z", "end": "2019-03-02T00:00:00Z"},
        "granularity": "all",
        "group_by": ["city"],
        "aggregations": [{"type": "count"}],
    }
    rows = [[f"c{i}", 1] for i in range(3)]  # resultAsArray, granularity all: no timestamp
    with pytest.raises(ResultTooLarge):
        _respond(request, rows, max_rows=2)


def test_bucket_starts_are_shared_by_equal_intervals_in_any_offset() -> None:
    helsinki = {"start": "2019-03-01T00:00:00+02:00", "end": "2019-03-03T00:00:00+02:00", "time_zone": "Europe/Helsinki"}
    utc_spelled = {**helsinki, "start": "2019-02-28T22:00:00Z", "end": "2019-03-02T22:00:00Z"}
    plans = [
        plan_result(QuerySchema().load({"interval": interval, "granularity": "day", "aggregations": [{"type": "count"}]}),
                    max_buckets=10_000, max_rows=100)
        for interval in (helsinki, utc_spelled)
    ]
    assert plans[0].bucket_starts_ms == plans[1].bucket_starts_ms == (1551391200000, 1551477600000)


@pytest.mark.parametrize("group_by", [["city"], ["city", "distinct_visited_urls_count"], ["city", "country", "os_name"]])
def test_default_order_in_one_pass_matches_one_pass_per_key(group_by: list[str]) -> None:
    request = {"interval": {"start": "2019-03-01T00:00:00Z", "end": "2019-03-04T00:00:00Z"},
               "granularity": "day", "group_by": group_by, "aggregations": [{"type": "count"}]}
    plan = plan_result(QuerySchema().load(request), max_buckets=10_000, max_rows=100)
    pick = random.Random(7).choice
    values = [None, "a", "b", "B", "ä"] if len(group_by) != 2 else [None, "a", "b"]
    rows = [
        (pick(plan.bucket_starts_ms), [*(pick(values) if name != "distinct_visited_urls_count" else pick([None, 0, 2, 10])
                                         for name in group_by), 1])
        for _ in range(300)
    ]
    expected = list(rows)
    for key, descending in reversed(_sort_keys(plan)):
        expected.sort(key=key, reverse=descending)
    assert _ordered(plan, list(rows)) == expected


@pytest.mark.parametrize("druid_rows", [[{"event": {"city": "x", "count": 1}}], [["x"]], [[None, "x"], {"city": "y"}]])
def test_grouped_rows_in_another_shape_are_refused(druid_rows: list[Any]) -> None:
    request = {"interval": {"start": "2019-03-01T00:00:00Z", "end": "2019-03-02T00:00:00Z"},
               "granularity": "all", "group_by": ["city"], "aggregations": [{"type": "count"}]}
    plan = plan_result(QuerySchema().load(request), max_buckets=10_000, max_rows=100)
    with pytest.raises((KeyError, IndexError, TypeError)):
        plan_rows(druid_rows, translate(plan, "org", "visitor_sessions", "q", 1000), plan)
