"""The one result ordering rule: which columns sort, in which order and direction."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.query.ordering import SortColumn, sort_columns
from schemas.request import QuerySchema

_COUNT_AND_AVG = [{"type": "count"}, {"type": "avg", "fields": ["session_duration_secs"]}]

# (group_by, order_by, aggregations, the sort columns as (name, position, descending))
_ORDERS = [
    pytest.param(
        ["city"], [], [{"type": "count"}], [("timestamp", 0, False), ("city", 1, False)], id="time-then-group"
    ),
    pytest.param(
        ["city", "country"],
        [],
        [{"type": "count"}],
        [("timestamp", 0, False), ("city", 1, False), ("country", 2, False)],
        id="time-then-groups-in-order",
    ),
    pytest.param(
        ["city"],
        [{"field": "count", "direction": "desc"}],
        [{"type": "count"}],
        [("count", 2, True), ("city", 1, False), ("timestamp", 0, False)],
        id="order-by-first-timestamp-last",
    ),
    pytest.param(
        ["city", "country"],
        [{"field": "country", "direction": "desc"}, {"field": "session_duration_secs_avg"}],
        _COUNT_AND_AVG,
        [
            ("country", 2, True),
            ("session_duration_secs_avg", 4, False),
            ("city", 1, False),
            ("timestamp", 0, False),
        ],
        id="ordered-group-not-repeated",
    ),
]


@pytest.mark.parametrize(("group_by", "order_by", "aggregations", "expected"), _ORDERS)
def test_sort_columns(
    group_by: list[str], order_by: list[Any], aggregations: list[Any], expected: list[tuple[str, int, bool]]
) -> None:
    query = QuerySchema().load(
        {
            "interval": {"start": "2019-03-01T00:00:00Z", "end": "2019-03-02T00:00:00Z"},
            "granularity": "day",
            "group_by": group_by,
            "order_by": order_by,
            "aggregations": aggregations,
        }
    )
    assert sort_columns(query) == tuple(SortColumn(*column) for column in expected)


@pytest.mark.parametrize(("position", "nullable"), [(0, False), (1, True), (3, True)])
def test_only_the_bucket_start_is_never_null(position: int, nullable: bool) -> None:
    assert SortColumn("c", position, False).nullable is nullable
