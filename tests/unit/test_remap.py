"""Druid rows → public response: zero-fill, time zones, ordering, top-N, the row cap."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.backends.druid.backend import plan_rows
from proxy.backends.druid.translator import translate
from proxy.errors import ResultTooLarge
from proxy.result import plan_result, render
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
