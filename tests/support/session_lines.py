"""Session input lines shared by the validator's and the forgiving load's tests: a good line,
and bad ones of every kind with the start of the reason the validator gives."""

from __future__ import annotations

from typing import Any

import orjson

from tests.support.ids import ORG

GOOD: dict[str, Any] = {
    "timestamp": "2019-01-01T00:00:00.000+02:00",
    "organization_id": ORG,
    "session_id": "s1",
    "visitor_id": "v1",
    "browser_name": "Chrome",
    "browser_version": "71.0",
    "city": "Helsinki",
    "country": "FI",
    "device_type": "desktop",
    "os_name": "Windows",
    "ip_organization": None,
    "distinct_visited_urls": ["https://a/", "https://a/b"],
    "distinct_landing_urls": ["https://a/"],
    "distinct_referrer_urls": [],
    "distinct_search_terms": ["hinta"],
    "rooms": [],
    "session_duration_secs": 120,
    "distinct_visited_urls_count": 2,
}


def line(**changes: Any) -> bytes:
    row = {**GOOD, **changes}
    return orjson.dumps({key: value for key, value in row.items() if value is not ...})


BAD_LINES: list[tuple[str, bytes, str]] = [
    ("not_json", b'{"timestamp": ', "not valid JSON"),
    ("not_utf8", b'{"city": "\xff"}', "not valid JSON"),
    ("not_object", b"[1, 2]", "a line must be a JSON object"),
    ("blank", b"   ", "empty line"),
    ("unknown_key", line(referrer="x"), "unknown key 'referrer'"),
    ("missing_session", line(session_id=...), "session_id is required"),
    ("missing_count", line(distinct_visited_urls_count=...), "distinct_visited_urls_count is required"),
    ("naive_time", line(timestamp="2019-01-01T00:00:00"), "timestamp must be ISO-8601"),
    ("date_only", line(timestamp="2019-01-01"), "timestamp must be ISO-8601"),
    ("space_separator", line(timestamp="2019-01-01 00:00:00Z"), "timestamp must be ISO-8601"),
    ("bad_day", line(timestamp="2019-02-30T00:00:00Z"), "timestamp '2019-02-30T00:00:00Z' is not a valid"),
    ("epoch_number", line(timestamp=1546300800000), "timestamp must be ISO-8601"),
    ("offset_minutes_75", line(timestamp="2019-01-01T00:00:00+05:75"), "timestamp offset must be"),
    ("offset_hours_24", line(timestamp="2019-01-01T00:00:00-24:00"), "timestamp offset must be"),
    ("year_1", line(timestamp="0001-01-01T00:00:00+01:00"), "timestamp '0001-01-01T00:00:00+01:00' is"),
    ("year_9999", line(timestamp="9999-12-31T23:59:59-01:00"), "timestamp '9999-12-31T23:59:59-01:00' is"),
    (
        "before_queries",
        line(timestamp="0999-12-31T23:59:59Z"),
        "timestamp '0999-12-31T23:59:59Z' is outside",
    ),
    ("after_queries", line(timestamp="9000-01-01T00:00:00Z"), "timestamp '9000-01-01T00:00:00Z' is outside"),
    ("org_not_uuid", line(organization_id="acme"), "organization_id must be a lowercase UUID"),
    ("org_uppercase", line(organization_id=ORG.upper()), "organization_id must be a lowercase UUID"),
    ("empty_session", line(session_id=""), "session_id must be a non-empty string"),
    ("numeric_visitor", line(visitor_id=7), "visitor_id must be a non-empty string"),
    ("empty_city", line(city=""), "city must be a non-empty string or null"),
    ("list_country", line(country=["FI"]), "country must be a non-empty string or null"),
    ("device_phone", line(device_type="phone"), "device_type must be desktop, tablet, mobile or null"),
    ("rooms_null_item", line(rooms=["a", None]), "rooms must be an array of non-empty strings"),
    ("rooms_string", line(rooms="lobby"), "rooms must be an array of non-empty strings"),
    ("rooms_null", line(rooms=None), "rooms must be an array of non-empty strings"),
    ("terms_repeat", line(distinct_search_terms=["a", "a"]), "distinct_search_terms must not repeat"),
    (
        "too_many_urls",
        line(distinct_visited_urls=[f"https://a/{i}" for i in range(101)]),
        "distinct_visited_urls holds 101 items, at most 100 allowed",
    ),
    ("negative", line(session_duration_secs=-1), "session_duration_secs must be a non-negative integer"),
    ("fraction", line(session_duration_secs=1.5), "session_duration_secs must be a non-negative integer"),
    ("float_whole", line(session_duration_secs=2.0), "session_duration_secs must be a non-negative integer"),
    ("boolean", line(session_duration_secs=True), "session_duration_secs must be a non-negative integer"),
    (
        "too_big",
        line(distinct_visited_urls_count=2**53),
        "distinct_visited_urls_count must be a non-negative",
    ),
    (
        "string_count",
        line(distinct_visited_urls_count="2"),
        "distinct_visited_urls_count must be a non-negative",
    ),
]
