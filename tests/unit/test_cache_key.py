"""The cache key: each of its parts changes it, equal requests share it; the ETag and If-None-Match."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.cache.key import cache_key, canonical_query, entity_tag, matches
from proxy.query.plan import ResultPlan, plan_result
from schemas.request import QuerySchema
from tests.support.ids import ORG, OTHER_ORG

BASE: dict[str, Any] = {
    "interval": {"start": "2019-03-01T00:00:00Z", "end": "2019-03-03T00:00:00Z"},
    "granularity": "day",
    "aggregations": [{"type": "count"}],
}


def _plan(max_rows: int = 100, **changes: Any) -> ResultPlan:
    return plan_result(QuerySchema().load({**BASE, **changes}), max_buckets=10_000, max_rows=max_rows)


def _key(plan: ResultPlan, organization: str = ORG, version: str = "v1") -> str:
    return cache_key(organization, canonical_query(plan), version)


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("interval", {"interval": {"start": "2019-03-01T00:00:00Z", "end": "2019-03-04T00:00:00Z"}}),
        ("zone", {"interval": {**BASE["interval"], "time_zone": "Europe/Helsinki"}}),
        ("granularity", {"granularity": "hour"}),
        ("aggregation", {"aggregations": [{"type": "avg", "fields": ["session_duration_secs"]}]}),
        ("group_by", {"group_by": ["country"]}),
        ("filter", {"filters": {"type": "selector", "dimension": "country", "value": "FI"}}),
        ("limit", {"group_by": ["country"], "limit": 5}),
        ("totals", {"totals": True}),
        ("compare", {"compare": "previous_period"}),
        ("compare interval", {"compare": {"start": "2019-02-01T00:00:00Z", "end": "2019-02-03T00:00:00Z"}}),
    ],
)
def test_every_part_of_the_query_changes_the_key(name: str, changes: dict[str, Any]) -> None:
    assert _key(_plan(**changes)) != _key(_plan()), name


@pytest.mark.parametrize(
    ("name", "other"),
    [
        ("organization", lambda: _key(_plan(), organization=OTHER_ORG)),
        ("data version", lambda: _key(_plan(), version="v2")),
        ("row cap", lambda: _key(_plan(max_rows=101))),
    ],
)
def test_organization_version_and_row_cap_change_the_key(name: str, other: Any) -> None:
    assert other() != _key(_plan()), name


def test_each_offset_has_its_key() -> None:
    page = {"group_by": ["country"], "limit": 5}
    assert _key(_plan(**page, offset=5)) != _key(_plan(**page, offset=10))


def test_equal_requests_share_the_key() -> None:
    assert _key(_plan()) == _key(_plan())


def test_filters_of_equal_fields_but_another_type_differ() -> None:
    like = _plan(filters={"type": "like", "dimension": "city", "pattern": "Hel%"})
    regex = _plan(filters={"type": "regex", "dimension": "city", "pattern": "Hel%"})
    assert canonical_query(like) != canonical_query(regex)


def test_parts_cannot_run_into_each_other() -> None:
    assert cache_key("ab", b"c", "v") != cache_key("a", b"bc", "v")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        ("*", True),
        ('"abcd"', False),
        ("abc", False),
    ],
)
def test_if_none_match_names_the_tag(header: str | None, expected: bool) -> None:
    assert matches(header, entity_tag("abc")) is expected
