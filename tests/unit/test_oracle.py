"""The oracle against answers computed by hand: every expected row below was worked out on paper."""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest

from tests.support.oracle import evaluate, like_to_regex, oracle_total

ORG = "org-a"
HELSINKI = "Europe/Helsinki"
_ids = count()


def _row(timestamp: str, **fields: Any) -> dict[str, Any]:
    row = {
        "timestamp": timestamp,
        "organization_id": ORG,
        "session_id": f"s{next(_ids)}",
        "visitor_id": "v1",
        "session_duration_secs": 10,
        "distinct_visited_urls_count": 1,
    }
    return {**row, **fields}


def _query(start: str, end: str, granularity: str, zone: str | None = None, **extra: Any) -> dict[str, Any]:
    interval = {"start": start, "end": end, **({"time_zone": zone} if zone else {})}
    return {"interval": interval, "granularity": granularity, "aggregations": [{"type": "count"}], **extra}


DAY = "2019-06-01T00:00:00Z", "2019-06-02T00:00:00Z"
T = "2019-06-01T12:00:00Z"
ALL_T = "2019-06-01T00:00:00.000Z"
PEOPLE = [
    _row(T, city="Helsinki", country="FI", session_duration_secs=5, rooms=["lobby", "support"]),
    _row(T, city=None, country="FI", session_duration_secs=10, rooms=[]),
    _row(T, city="Zürich", country="CH", session_duration_secs=60, distinct_search_terms=["100% free"]),
    _row(
        T, city="Tampere", session_duration_secs=600, rooms=["support"], distinct_search_terms=["Hinta", "x"]
    ),
]


def _filtered(filters: Any) -> dict[str, Any]:
    return _query(*DAY, "all", filters=filters)


def _leaf(kind: str, dimension: str, **spec: Any) -> dict[str, Any]:
    return {"type": kind, "dimension": dimension, **spec}


CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any], list[list[Any]]]] = [
    (
        "helsinki_spring_day_is_23_hours",
        [
            _row("2019-03-30T21:59:59.999Z"),
            _row("2019-03-30T22:00:00Z"),
            _row("2019-03-31T20:59:59.999Z"),
            _row("2019-03-31T21:00:00Z"),
        ],
        _query("2019-03-30T00:00:00+02:00", "2019-04-02T00:00:00+03:00", "day", HELSINKI),
        [
            ["2019-03-30T00:00:00.000+02:00", 1],
            ["2019-03-31T00:00:00.000+02:00", 2],
            ["2019-04-01T00:00:00.000+03:00", 1],
        ],
    ),
    (
        "helsinki_autumn_day_is_25_hours",
        [_row("2019-10-26T21:00:00Z"), _row("2019-10-27T21:59:59.999Z"), _row("2019-10-27T22:00:00Z")],
        _query("2019-10-27T00:00:00+03:00", "2019-10-29T00:00:00+02:00", "day", HELSINKI),
        [["2019-10-27T00:00:00.000+03:00", 2], ["2019-10-28T00:00:00.000+02:00", 1]],
    ),
    (
        "hours_across_the_repeated_autumn_hour",
        [_row("2019-10-27T00:30:00Z"), _row("2019-10-27T01:00:00Z"), _row("2019-10-27T01:59:59.999Z")],
        _query("2019-10-27T02:00:00+03:00", "2019-10-27T05:00:00+02:00", "hour", HELSINKI),
        [
            ["2019-10-27T02:00:00.000+03:00", 0],
            ["2019-10-27T03:00:00.000+03:00", 1],
            ["2019-10-27T03:00:00.000+02:00", 2],
            ["2019-10-27T04:00:00.000+02:00", 0],
        ],
    ),
    (
        "week_starts_monday_and_floors_the_interval_start",
        [_row("2019-01-06T23:59:59Z"), _row("2019-01-07T00:00:00Z"), _row("2019-01-01T00:00:00Z")],
        _query("2019-01-02T00:00:00Z", "2019-01-15T00:00:00Z", "week"),
        [["2018-12-31T00:00:00.000Z", 1], ["2019-01-07T00:00:00.000Z", 1], ["2019-01-14T00:00:00.000Z", 0]],
    ),
    (
        "quarters_in_helsinki",
        [_row("2019-03-31T20:59:59.999Z"), _row("2019-03-31T21:00:00Z"), _row("2019-09-30T21:00:00Z")],
        _query("2019-01-01T00:00:00+02:00", "2020-01-01T00:00:00+02:00", "quarter", HELSINKI),
        [
            ["2019-01-01T00:00:00.000+02:00", 1],
            ["2019-04-01T00:00:00.000+03:00", 1],
            ["2019-07-01T00:00:00.000+03:00", 0],
            ["2019-10-01T00:00:00.000+03:00", 1],
        ],
    ),
    (
        "fifteen_minutes_on_the_kathmandu_wall_clock",
        [_row("2019-06-01T00:00:00Z"), _row("2019-06-01T00:14:59.999Z"), _row("2019-06-01T00:15:00Z")],
        _query("2019-06-01T05:50:00+05:45", "2019-06-01T06:10:00+05:45", "fifteen_minute", "Asia/Kathmandu"),
        [["2019-06-01T05:45:00.000+05:45", 1], ["2019-06-01T06:00:00.000+05:45", 1]],
    ),
    (
        "zero_fill_other_org_and_exclusive_end",
        [
            _row("2019-06-01T00:00:00Z", organization_id="org-b"),
            _row("2019-06-01T01:30:00Z"),
            _row("2019-06-01T03:00:00Z"),
        ],
        _query(
            "2019-06-01T00:00:00Z",
            "2019-06-01T03:00:00Z",
            "hour",
            aggregations=[
                {"type": "count"},
                {"type": "avg", "fields": ["session_duration_secs"]},
                {"type": "hyperUnique", "fields": ["visitor_id"]},
            ],
        ),
        [
            ["2019-06-01T00:00:00.000Z", 0, None, 0.0],
            ["2019-06-01T01:00:00.000Z", 1, 10.0, 1.0],
            ["2019-06-01T02:00:00.000Z", 0, None, 0.0],
        ],
    ),
    (
        "all_is_stamped_with_the_interval_start_in_the_zone",
        [_row("2019-06-01T10:00:00Z"), _row("2019-06-01T11:00:00Z", organization_id="org-b")],
        _query("2019-06-01T10:17:00+03:00", "2019-06-02T00:00:00+03:00", "all", HELSINKI),
        [["2019-06-01T10:17:00.000+03:00", 1]],
    ),
    (
        "array_explodes_and_empty_or_missing_is_one_null_group",
        [*PEOPLE, _row(T, rooms=["lobby"])],
        _query(
            *DAY,
            "all",
            group_by=["rooms"],
            aggregations=[{"type": "count"}, {"type": "avg", "fields": ["session_duration_secs"]}],
        ),
        [[ALL_T, None, 2, 35.0], [ALL_T, "lobby", 2, 7.5], [ALL_T, "support", 2, 302.5]],
    ),
    (
        "two_arrays_explode_the_cross_product",
        [
            _row(T, rooms=["b", "a"], distinct_search_terms=["x"]),
            _row(T, rooms=[], distinct_search_terms=["y", "x"]),
        ],
        _query(*DAY, "all", group_by=["rooms", "distinct_search_terms"]),
        [[ALL_T, None, "x", 1], [ALL_T, None, "y", 1], [ALL_T, "a", "x", 1], [ALL_T, "b", "x", 1]],
    ),
    (
        "not_selector_keeps_nulls",
        PEOPLE,
        _filtered({"type": "not", "field": _leaf("selector", "city", value="Helsinki")}),
        [[ALL_T, 3]],
    ),
    (
        "selector_null_matches_empty_and_missing_arrays",
        PEOPLE,
        _filtered(_leaf("selector", "rooms", value=None)),
        [[ALL_T, 2]],
    ),
    (
        "not_in_with_null",
        PEOPLE,
        _filtered({"type": "not", "field": _leaf("in", "city", values=["Helsinki", None])}),
        [[ALL_T, 2]],
    ),
    (
        "selector_numeric_as_string",
        PEOPLE,
        _filtered(_leaf("selector", "session_duration_secs", value="60")),
        [[ALL_T, 1]],
    ),
    (
        "bound_numeric",
        PEOPLE,
        _filtered(_leaf("bound", "session_duration_secs", lower=6, upper=600, upperStrict=True)),
        [[ALL_T, 2]],
    ),
    (
        "bound_lexicographic_on_numbers",
        PEOPLE,
        _filtered(_leaf("bound", "session_duration_secs", lower="6", ordering="lexicographic")),
        [[ALL_T, 2]],
    ),
    (
        "not_bound_keeps_nulls",
        PEOPLE,
        _filtered({"type": "not", "field": _leaf("bound", "city", upper="M")}),
        [[ALL_T, 3]],
    ),
    ("like_prefix", PEOPLE, _filtered(_leaf("like", "city", pattern="_e%i")), [[ALL_T, 1]]),
    (
        "like_escaped_percent",
        PEOPLE,
        _filtered(_leaf("like", "distinct_search_terms", pattern="100\\% f__e")),
        [[ALL_T, 1]],
    ),
    ("regex_matches_anywhere", PEOPLE, _filtered(_leaf("regex", "city", pattern="er")), [[ALL_T, 1]]),
    (
        "search_insensitive_unicode",
        PEOPLE,
        _filtered(_leaf("search", "city", query={"type": "insensitive_contains", "value": "ZÜR"})),
        [[ALL_T, 1]],
    ),
    (
        "search_contains_is_case_sensitive_on_arrays",
        PEOPLE,
        _filtered(_leaf("search", "distinct_search_terms", query={"type": "contains", "value": "hin"})),
        [[ALL_T, 0]],
    ),
    (
        "or_and_not",
        PEOPLE,
        _filtered(
            {
                "type": "or",
                "fields": [
                    _leaf("selector", "country", value="CH"),
                    {
                        "type": "and",
                        "fields": [
                            _leaf("selector", "country", value="FI"),
                            {"type": "not", "field": _leaf("selector", "city", value=None)},
                        ],
                    },
                ],
            }
        ),
        [[ALL_T, 2]],
    ),
    (
        "order_by_count_desc_then_other_groups_then_time_with_limit",
        [
            _row("2019-06-01T01:00:00Z", city="B"),
            _row("2019-06-01T02:00:00Z", city="B"),
            _row("2019-06-02T01:00:00Z", city="A"),
            _row("2019-06-02T01:00:00Z", city=None),
            _row("2019-06-01T05:00:00Z", city=None),
            _row("2019-06-02T05:00:00Z", city="B"),
        ],
        _query(
            "2019-06-01T00:00:00Z",
            "2019-06-03T00:00:00Z",
            "day",
            group_by=["city"],
            order_by=[{"field": "count", "direction": "desc"}],
            limit=4,
        ),
        [
            ["2019-06-01T00:00:00.000Z", "B", 2],
            ["2019-06-01T00:00:00.000Z", None, 1],
            ["2019-06-02T00:00:00.000Z", None, 1],
            ["2019-06-02T00:00:00.000Z", "A", 1],
        ],
    ),
    (
        "default_order_time_then_numbers_numerically_and_desc_puts_nulls_last",
        [
            _row(T, distinct_visited_urls_count=10, city=None),
            _row(T, distinct_visited_urls_count=2, city="A"),
        ],
        _query(
            *DAY,
            "all",
            group_by=["distinct_visited_urls_count", "city"],
            order_by=[{"field": "city", "direction": "desc"}],
        ),
        [[ALL_T, 2, "A", 1], [ALL_T, 10, None, 1]],
    ),
]


@pytest.mark.parametrize(("rows", "payload", "data"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hand_computed(rows: list[dict[str, Any]], payload: dict[str, Any], data: list[list[Any]]) -> None:
    assert evaluate(rows, ORG, payload)["data"] == data


def test_fields_follow_request_order() -> None:
    payload = _query(
        *DAY,
        "day",
        group_by=["rooms", "city"],
        aggregations=[
            {"type": "hyperUnique", "fields": ["visitor_id", "session_id"]},
            {"type": "count"},
            {"type": "avg", "fields": ["distinct_visited_urls_count"]},
        ],
    )
    assert evaluate(PEOPLE, ORG, payload)["fields"] == [
        {"name": "timestamp", "type": "dimension"},
        {"name": "rooms", "type": "dimension"},
        {"name": "city", "type": "dimension"},
        {"name": "visitor_id_hyper_unique", "type": "metric"},
        {"name": "session_id_hyper_unique", "type": "metric"},
        {"name": "count", "type": "metric"},
        {"name": "distinct_visited_urls_count_avg", "type": "metric"},
    ]


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("a%", "abc", True),
        ("%c", "abc", True),
        ("a_c", "abc", True),
        ("a_c", "abbc", False),
        ("a\\_c", "abc", False),
        ("a\\_c", "a_c", True),
        ("A%", "abc", False),
        ("%.%", "a.b", True),
        ("%.%", "ab", False),
        ("50\\%", "50%", True),
    ],
)
def test_like(pattern: str, value: str, expected: bool) -> None:
    assert (like_to_regex(pattern).fullmatch(value) is not None) is expected


def test_total_counts_half_open_interval() -> None:
    rows = [_row("2019-06-01T00:00:00Z"), _row("2019-06-01T23:59:59.999Z"), _row("2019-06-02T00:00:00+00:00")]
    assert oracle_total(rows, ORG, "2019-06-01T03:00:00+03:00", "2019-06-02T00:00:00Z") == 2


@pytest.mark.parametrize(
    ("interval", "compare", "printed"),
    [
        (
            ("2019-04-01T00:00:00+03:00", "2019-04-08T00:00:00+03:00", HELSINKI),
            "previous_period",
            ("2019-03-25T00:00:00.000+02:00", "2019-04-01T00:00:00.000+03:00"),
        ),
        (
            ("2019-06-01T06:00:00Z", "2019-06-01T09:00:00Z", None),
            "previous_period",
            ("2019-06-01T03:00:00.000Z", "2019-06-01T06:00:00.000Z"),
        ),
        (
            ("2020-02-29T00:00:00+02:00", "2020-03-01T00:00:00+02:00", HELSINKI),
            "previous_year",
            ("2019-02-28T00:00:00.000+02:00", "2019-03-01T00:00:00.000+02:00"),
        ),
        (
            ("2020-03-31T03:30:00+03:00", "2020-10-27T03:30:00+02:00", HELSINKI),
            "previous_year",
            ("2019-03-31T04:00:00.000+03:00", "2019-10-27T03:30:00.000+03:00"),
        ),
    ],
)
def test_comparison_interval(
    interval: tuple[str, str, str | None], compare: str, printed: tuple[str, str]
) -> None:
    answer = evaluate([], ORG, _query(*interval[:2], "all", interval[2], compare=compare))
    assert (answer["comparison"]["interval"]["start"], answer["comparison"]["interval"]["end"]) == printed


def test_totals_count_each_session_once_whatever_the_rows_shown() -> None:
    payload = _query(
        *DAY,
        "all",
        group_by=["rooms"],
        aggregations=[{"type": "count"}, {"type": "avg", "fields": ["session_duration_secs"]}],
        order_by=[{"field": "count", "direction": "desc"}],
        limit=1,
        offset=1,
        totals=True,
    )
    answer = evaluate(PEOPLE, ORG, payload)
    # By count, then nulls first: null 2 (Zürich's missing rooms, the empty list), support 2
    # (Helsinki 5 s, Tampere 600 s), lobby 1; the page is the second row.
    assert answer["data"] == [[ALL_T, "support", 2, 302.5]]
    assert answer["totals"] == [4, (5 + 10 + 60 + 600) / 4]


def test_totals_of_no_sessions() -> None:
    answer = evaluate(
        [],
        ORG,
        _query(*DAY, "day", totals=True, aggregations=[{"type": "avg", "fields": ["session_duration_secs"]}]),
    )
    assert answer["totals"] == [None]
