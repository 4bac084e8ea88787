"""Backend rows → public response: zero-fill, time zones, metric types, ordering, top-N, the row cap."""

from __future__ import annotations

import copy
import math
import random
from functools import cmp_to_key
from itertools import product
from typing import Any

import pytest

from proxy.backends.druid.backend import plan_rows, totals_rows
from proxy.backends.druid.translator import translate, translate_totals
from proxy.errors import ResultTooLarge
from proxy.query.plan import ResultPlan, plan_result
from proxy.query.render import Answers, is_ordered, render, render_answer
from schemas.request import QuerySchema
from tests.support.golden import cases


def _respond(request: dict[str, Any], druid_rows: list[Any], max_rows: int = 100) -> Any:
    plan = plan_result(QuerySchema().load(request), max_buckets=10_000, max_rows=max_rows)
    return render(plan, plan_rows(druid_rows, translate(plan, "org", "visitor_sessions", "q", 1000), plan))


@pytest.mark.parametrize("case", cases("remap"))
def test_druid_rows_render_as_the_golden_response(case: dict[str, Any]) -> None:
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


def _plan(**request: Any) -> ResultPlan:
    request = {
        "interval": {"start": "2019-03-01T00:00:00Z", "end": "2019-03-11T00:00:00Z"},
        "granularity": "day",
        "aggregations": [{"type": "count"}],
        **request,
    }
    return plan_result(QuerySchema().load(request), max_buckets=10_000, max_rows=1_000)


_STRINGS = [None, "a", "b", "B", "ä", ""]
_NUMBERS = [None, 0, 2, 10]
_COUNT_AND_AVG = [{"type": "count"}, {"type": "avg", "fields": ["session_duration_secs"]}]


def _compare_in(columns: list[tuple[int, bool]]) -> Any:
    """The documented order, written as a comparison: nulls first ascending, last descending."""

    def compare(left: list[Any], right: list[Any]) -> int:
        for index, descending in columns:
            a, b = left[index], right[index]
            if a == b:
                continue
            smaller = a is None or (b is not None and a < b)
            return (1 if smaller else -1) if descending else (-1 if smaller else 1)
        return 0

    return compare


def _random_rows(plan: ResultPlan, seed: int) -> list[list[Any]]:
    """Distinct (bucket, groups) rows, with a count and, when asked for, an average (ties in both)."""
    pick = random.Random(seed)
    domains = [_NUMBERS if name == "distinct_visited_urls_count" else _STRINGS for name in plan.group_by]
    population = list(product(plan.bucket_starts_ms, *domains))
    keys = pick.sample(population, min(len(population), 150))
    metrics = [[1, 2, 3] if agg.type == "count" else [None, 1.5, 2.0] for agg in plan.metrics]
    return [[*key, *(pick.choice(values) for values in metrics)] for key in keys]


# (group_by, order_by, aggregations, the order as (row index, descending), most significant first)
_ORDERS = [
    (["city"], [], [{"type": "count"}], [(0, False), (1, False)]),
    (["city", "distinct_visited_urls_count"], [], [{"type": "count"}], [(0, False), (1, False), (2, False)]),
    (
        ["city", "country", "os_name"],
        [],
        [{"type": "count"}],
        [(0, False), (1, False), (2, False), (3, False)],
    ),
    (
        ["city"],
        [{"field": "count", "direction": "desc"}],
        [{"type": "count"}],
        [(2, True), (1, False), (0, False)],
    ),
    (
        ["city", "country"],
        [
            {"field": "country", "direction": "desc"},
            {"field": "session_duration_secs_avg", "direction": "asc"},
        ],
        _COUNT_AND_AVG,
        [(2, True), (4, False), (1, False), (0, False)],
    ),
    (
        ["distinct_visited_urls_count"],
        [{"field": "session_duration_secs_avg", "direction": "desc"}],
        _COUNT_AND_AVG,
        [(3, True), (1, False), (0, False)],
    ),
]


@pytest.mark.parametrize(("group_by", "order_by", "aggregations", "columns"), _ORDERS)
def test_rows_in_any_order_come_out_in_the_documented_order(
    group_by: list[str], order_by: list[Any], aggregations: list[Any], columns: list[tuple[int, bool]]
) -> None:
    plan = _plan(group_by=group_by, order_by=order_by, aggregations=aggregations)
    shuffled = _random_rows(plan, seed=len(columns))
    expected = sorted(shuffled, key=cmp_to_key(_compare_in(columns)))
    assert not is_ordered(plan, shuffled)
    assert is_ordered(plan, expected)  # backend rows already in order are checked, not sorted
    assert render(plan, shuffled) == render(plan, expected)
    assert [row[1:] for row in render(plan, expected)["data"]] == [row[1:] for row in expected]


@pytest.mark.parametrize("group_by", [[], ["city"]])
def test_render_leaves_the_backend_rows_as_they_are(group_by: list[str]) -> None:
    plan = _plan(group_by=group_by, aggregations=_COUNT_AND_AVG)
    rows = [
        [plan.bucket_starts_ms[1], *(["x"] if group_by else []), 2.0, float("nan")],
        [plan.bucket_starts_ms[0], *(["y"] if group_by else []), 1, 3.5],
    ]
    before = copy.deepcopy(rows)
    render(plan, rows)
    assert repr(rows) == repr(before)


@pytest.mark.parametrize(
    ("aggregation", "values", "expected"),
    [
        ({"type": "count"}, [3, 2.0, None], [3, 2, 0]),
        ({"type": "hyperUnique", "fields": ["visitor_id"]}, [3, 2.5, None], [3.0, 2.5, 0.0]),
        (
            {"type": "avg", "fields": ["session_duration_secs"]},
            [math.nan, math.inf, None],
            [None, None, None],
        ),
        ({"type": "avg", "fields": ["session_duration_secs"]}, [4, 2.5, -math.inf], [4.0, 2.5, None]),
    ],
)
@pytest.mark.parametrize("group_by", [[], ["city"]])
def test_metric_values_come_out_as_their_type(
    aggregation: dict[str, Any], values: list[Any], expected: list[Any], group_by: list[str]
) -> None:
    plan = _plan(group_by=group_by, aggregations=[aggregation])
    rows = [
        [bucket, *(["x"] if group_by else []), value] for bucket, value in zip(plan.bucket_starts_ms, values)
    ]
    data = render(plan, rows)["data"][: len(values)]  # ungrouped: zero-filled buckets follow
    assert [(row[-1], type(row[-1])) for row in data] == [(value, type(value)) for value in expected]


_WEEK = {
    "interval": {
        "start": "2019-04-01T00:00:00+03:00",
        "end": "2019-04-03T00:00:00+03:00",
        "time_zone": "Europe/Helsinki",
    },
    "granularity": "day",
    "aggregations": [{"type": "count"}, {"type": "avg", "fields": ["session_duration_secs"]}],
    "compare": "previous_period",
    "totals": True,
}


@pytest.mark.parametrize(
    ("druid_totals", "totals", "compared_totals"),
    [
        (
            [
                {
                    "timestamp": "x",
                    "result": {"count@0": 4, "session_duration_secs_avg@0": 2.5, "count@1": None},
                }
            ],
            [4, 2.5],
            [0, None],
        ),
        ([], [0, None], [0, None]),
    ],
    ids=["answered", "no_row"],
)
def test_totals_and_comparison_join_the_answer(
    druid_totals: list[Any], totals: list[Any], compared_totals: list[Any]
) -> None:
    plan = plan_result(QuerySchema().load(_WEEK), max_buckets=100, max_rows=100)
    query = translate_totals(plan, "org", "visitor_sessions", "q", 1000)
    day = [
        {
            "timestamp": "2019-03-30T00:00:00.000+02:00",
            "result": {"count": 3, "session_duration_secs_avg": 1.0},
        }
    ]
    answers = Answers(
        rows=[],
        comparison_rows=plan_rows(
            day, translate(plan.comparison, "org", "visitor_sessions", "q", 1000), plan.comparison
        ),
        totals=totals_rows(druid_totals, query, 2),
    )
    body = render_answer(plan, answers)
    assert body["totals"] == totals
    assert body["data"] == [
        ["2019-04-01T00:00:00.000+03:00", 0, None],
        ["2019-04-02T00:00:00.000+03:00", 0, None],
    ]
    assert body["comparison"] == {
        "interval": {
            "start": "2019-03-30T00:00:00.000+02:00",
            "end": "2019-04-01T00:00:00.000+03:00",
            "time_zone": "Europe/Helsinki",
        },
        "fields": body["fields"],
        "data": [["2019-03-30T00:00:00.000+02:00", 3, 1.0], ["2019-03-31T00:00:00.000+02:00", 0, None]],
        "totals": compared_totals,
    }


def test_without_the_new_keys_the_answer_is_fields_and_data() -> None:
    plan = _plan()
    assert list(render_answer(plan, Answers(rows=[]))) == ["fields", "data"]
