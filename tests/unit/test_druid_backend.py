"""Druid's answer → backend rows: groupBy arrays taken as they come, other shapes refused."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.backends.druid.backend import plan_rows
from proxy.backends.druid.translator import translate
from proxy.query.plan import ResultPlan, plan_result
from schemas.request import QuerySchema


def _plan(granularity: str = "day") -> ResultPlan:
    request = {
        "interval": {"start": "2019-03-01T00:00:00Z", "end": "2019-03-11T00:00:00Z"},
        "granularity": granularity,
        "group_by": ["city"],
        "aggregations": [{"type": "count"}],
    }
    return plan_result(QuerySchema().load(request), max_buckets=10_000, max_rows=1_000)


def test_grouped_arrays_in_plan_order_are_the_backend_rows_uncopied() -> None:
    plan = _plan()
    druid_rows = [[plan.bucket_starts_ms[0], "x", 1]]
    assert plan_rows(druid_rows, translate(plan, "org", "visitor_sessions", "q", 1000), plan) is druid_rows


@pytest.mark.parametrize(
    ("granularity", "druid_rows"),
    [
        ("all", [{"event": {"city": "x", "count": 1}}]),
        ("all", [["x"]]),
        ("all", [[None, "x"], {"city": "y"}]),
        ("day", [{"event": {"city": "x", "count": 1}}]),
        ("day", [[1551398400000, "x", 1], [1551398400000, "y"]]),
        ("day", [[1551398400000, "x", 1], [1551398400000, "y", 1, 2]]),
        ("day", [[1551398400000, "x", 1], {0: 1551398400000, 1: "y", 2: 1}]),
    ],
)
def test_grouped_rows_in_another_shape_are_refused(granularity: str, druid_rows: list[Any]) -> None:
    plan = _plan(granularity)
    with pytest.raises((KeyError, IndexError, TypeError)):
        plan_rows(druid_rows, translate(plan, "org", "visitor_sessions", "q", 1000), plan)
