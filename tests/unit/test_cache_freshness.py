"""Freshness: past intervals are cached until their data changes, recent ones for a short window."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.cache.freshness import Freshness
from proxy.query.plan import ResultPlan, plan_result
from schemas.request import QuerySchema

END = 1_551_571_200.0  # 2019-03-03T00:00:00Z, the plan's end


def _plan(**more: Any) -> ResultPlan:
    request = {
        "interval": {"start": "2019-03-01T00:00:00Z", "end": "2019-03-03T00:00:00Z"},
        "granularity": "day",
        "aggregations": [{"type": "count"}],
        **more,
    }
    return plan_result(QuerySchema().load(request), max_buckets=100, max_rows=100)


@pytest.mark.parametrize(
    ("recent_secs", "now", "window", "lifetime"),
    [
        (10.0, END + 1, "", None),
        (10.0, END, "", None),
        (10.0, END - 1, f"recent/{int((END - 1) // 10)}", 10.0),
        (10.0, END - 86_400, f"recent/{int((END - 86_400) // 10)}", 10.0),
        (0.0, END - 1, None, 0.0),
        (0.0, END + 1, "", None),
    ],
)
def test_window_and_lifetime(
    recent_secs: float, now: float, window: str | None, lifetime: float | None
) -> None:
    freshness = Freshness(recent_secs)
    assert freshness.window(_plan(), now) == window
    assert freshness.lifetime_secs(_plan(), now) == lifetime


def test_recent_window_moves_on() -> None:
    freshness = Freshness(10.0)
    assert freshness.window(_plan(), END - 100) != freshness.window(_plan(), END - 85)


def test_a_comparison_interval_reaching_the_present_makes_the_answer_recent() -> None:
    later = {"start": "2019-03-03T00:00:00Z", "end": "2019-03-05T00:00:00Z"}
    assert Freshness(10.0).window(_plan(compare=later), END + 1) == f"recent/{int((END + 1) // 10)}"
    assert Freshness(10.0).window(_plan(compare="previous_period"), END + 1) == ""
