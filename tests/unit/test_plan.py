"""The result plan: bucket starts fixed up front, the bucket cap, the row limit, the columns."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.errors import BadRequest
from proxy.query.plan import ResultPlan, plan_result
from schemas.request import QuerySchema


def _plan(max_buckets: int = 10_000, max_rows: int = 100, **request: Any) -> ResultPlan:
    request = {
        "interval": {"start": "2019-03-01T00:00:00Z", "end": "2019-03-03T00:00:00Z"},
        "granularity": "day",
        "aggregations": [{"type": "count"}],
        **request,
    }
    return plan_result(QuerySchema().load(request), max_buckets=max_buckets, max_rows=max_rows)


def test_bucket_starts_are_shared_by_equal_intervals_in_any_offset() -> None:
    helsinki = {
        "start": "2019-03-01T00:00:00+02:00",
        "end": "2019-03-03T00:00:00+02:00",
        "time_zone": "Europe/Helsinki",
    }
    utc_spelled = {**helsinki, "start": "2019-02-28T22:00:00Z", "end": "2019-03-02T22:00:00Z"}
    starts = {_plan(interval=interval).bucket_starts_ms for interval in (helsinki, utc_spelled)}
    assert starts == {(1551391200000, 1551477600000)}


@pytest.mark.parametrize(("granularity", "buckets"), [("day", 2), ("hour", 48)])
def test_buckets_up_to_the_cap_are_planned(granularity: str, buckets: int) -> None:
    plan = _plan(max_buckets=buckets, granularity=granularity)
    assert len(plan.bucket_starts_ms) == buckets


@pytest.mark.parametrize(("granularity", "max_buckets"), [("day", 1), ("hour", 47), ("minute", 100)])
def test_more_buckets_than_the_cap_is_the_callers_error(granularity: str, max_buckets: int) -> None:
    with pytest.raises(BadRequest) as caught:
        _plan(max_buckets=max_buckets, granularity=granularity)
    assert caught.value.errors == {"granularity": [f"At most {max_buckets} buckets."]}


@pytest.mark.parametrize(("limit", "max_rows", "row_limit"), [(None, 100, 101), (7, 100, 7), (None, 5, 6)])
def test_row_limit_is_the_callers_limit_or_one_past_the_cap(
    limit: int | None, max_rows: int, row_limit: int
) -> None:
    limits = {} if limit is None else {"limit": limit}
    assert _plan(max_rows=max_rows, group_by=["city"], **limits).row_limit == row_limit


def test_fields_are_timestamp_groups_then_metrics() -> None:
    plan = _plan(
        group_by=["country", "city"],
        aggregations=[{"type": "avg", "fields": ["session_duration_secs"]}, {"type": "count"}],
    )
    assert plan.fields() == [
        {"name": "timestamp", "type": "dimension"},
        {"name": "country", "type": "dimension"},
        {"name": "city", "type": "dimension"},
        {"name": "session_duration_secs_avg", "type": "metric"},
        {"name": "count", "type": "metric"},
    ]
