"""The NDJSON input contract: which lines are refused, with what message, and what a good file yields."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from proxyctl.ingest.ndjson import InvalidLine, combine, iter_sessions, validate_file
from tests.support.ids import ORG

OTHER_ORG = "0b7e2a9c-1d3f-4e5a-9b8c-7d6e5f4a3b2c"

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


def _line(**changes: Any) -> bytes:
    row = {**GOOD, **changes}
    return orjson.dumps({key: value for key, value in row.items() if value is not ...})


def _write(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


BAD_LINES: list[tuple[str, bytes, str]] = [
    ("not_json", b'{"timestamp": ', "not valid JSON"),
    ("not_utf8", b'{"city": "\xff"}', "not valid JSON"),
    ("not_object", b"[1, 2]", "a line must be a JSON object"),
    ("blank", b"   ", "empty line"),
    ("unknown_key", _line(referrer="x"), "unknown key 'referrer'"),
    ("missing_session", _line(session_id=...), "session_id is required"),
    ("missing_count", _line(distinct_visited_urls_count=...), "distinct_visited_urls_count is required"),
    ("naive_time", _line(timestamp="2019-01-01T00:00:00"), "timestamp must be ISO-8601"),
    ("date_only", _line(timestamp="2019-01-01"), "timestamp must be ISO-8601"),
    ("space_separator", _line(timestamp="2019-01-01 00:00:00Z"), "timestamp must be ISO-8601"),
    ("bad_day", _line(timestamp="2019-02-30T00:00:00Z"), "timestamp '2019-02-30T00:00:00Z' is not a valid"),
    ("epoch_number", _line(timestamp=1546300800000), "timestamp must be ISO-8601"),
    ("offset_minutes_75", _line(timestamp="2019-01-01T00:00:00+05:75"), "timestamp offset must be"),
    ("offset_hours_24", _line(timestamp="2019-01-01T00:00:00-24:00"), "timestamp offset must be"),
    ("year_1", _line(timestamp="0001-01-01T00:00:00+01:00"), "timestamp '0001-01-01T00:00:00+01:00' is"),
    ("year_9999", _line(timestamp="9999-12-31T23:59:59-01:00"), "timestamp '9999-12-31T23:59:59-01:00' is"),
    (
        "before_queries",
        _line(timestamp="0999-12-31T23:59:59Z"),
        "timestamp '0999-12-31T23:59:59Z' is outside",
    ),
    ("after_queries", _line(timestamp="9000-01-01T00:00:00Z"), "timestamp '9000-01-01T00:00:00Z' is outside"),
    ("org_not_uuid", _line(organization_id="acme"), "organization_id must be a lowercase UUID"),
    ("org_uppercase", _line(organization_id=ORG.upper()), "organization_id must be a lowercase UUID"),
    ("empty_session", _line(session_id=""), "session_id must be a non-empty string"),
    ("numeric_visitor", _line(visitor_id=7), "visitor_id must be a non-empty string"),
    ("empty_city", _line(city=""), "city must be a non-empty string or null"),
    ("list_country", _line(country=["FI"]), "country must be a non-empty string or null"),
    ("device_phone", _line(device_type="phone"), "device_type must be desktop, tablet, mobile or null"),
    ("rooms_null_item", _line(rooms=["a", None]), "rooms must be an array of non-empty strings"),
    ("rooms_string", _line(rooms="lobby"), "rooms must be an array of non-empty strings"),
    ("rooms_null", _line(rooms=None), "rooms must be an array of non-empty strings"),
    ("terms_repeat", _line(distinct_search_terms=["a", "a"]), "distinct_search_terms must not repeat"),
    (
        "too_many_urls",
        _line(distinct_visited_urls=[f"https://a/{i}" for i in range(101)]),
        "distinct_visited_urls holds 101 items, at most 100 allowed",
    ),
    ("negative", _line(session_duration_secs=-1), "session_duration_secs must be a non-negative integer"),
    ("fraction", _line(session_duration_secs=1.5), "session_duration_secs must be a non-negative integer"),
    ("float_whole", _line(session_duration_secs=2.0), "session_duration_secs must be a non-negative integer"),
    ("boolean", _line(session_duration_secs=True), "session_duration_secs must be a non-negative integer"),
    (
        "too_big",
        _line(distinct_visited_urls_count=2**53),
        "distinct_visited_urls_count must be a non-negative",
    ),
    (
        "string_count",
        _line(distinct_visited_urls_count="2"),
        "distinct_visited_urls_count must be a non-negative",
    ),
]


@pytest.mark.parametrize(("bad", "reason"), [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES])
def test_first_bad_line_is_reported_with_its_number(tmp_path: Path, bad: bytes, reason: str) -> None:
    path = _write(tmp_path / "sessions.ndjson", _line(), _line(session_id="s2"), bad, b"not even json")
    with pytest.raises(InvalidLine) as caught:
        validate_file(path)
    assert (caught.value.line_number, caught.value.reason[: len(reason)]) == (3, reason)
    assert str(caught.value) == f"{path}:3: {caught.value.reason}"


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_file_of_one_out_of_range_time_is_an_invalid_line(tmp_path: Path, timestamp: str) -> None:
    path = _write(tmp_path / "sessions.ndjson", _line(timestamp=timestamp))
    with pytest.raises(InvalidLine, match=r":1: timestamp .* is outside"):
        validate_file(path)


def test_message_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "sessions.ndjson", _line(session_duration_secs=-5))
    with pytest.raises(
        InvalidLine, match=r"sessions\.ndjson:1: session_duration_secs must be a non-negative"
    ):
        validate_file(path)


def test_empty_file_has_no_sessions(tmp_path: Path) -> None:
    path = tmp_path / "empty.ndjson"
    path.write_bytes(b"")
    with pytest.raises(InvalidLine, match=r"empty\.ndjson:1: no sessions"):
        validate_file(path)


def test_good_file_summary(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "good.ndjson",
        _line(),
        _line(timestamp="2019-03-31T03:00:00.5+03:00", organization_id=OTHER_ORG),
        _line(timestamp="2018-12-31T21:59:59.999Z"),
        _line(timestamp="2019-03-31T01:00:00Z"),
    )
    summary = validate_file(path)
    assert summary.rows == 4
    assert summary.first_time == datetime(2018, 12, 31, 21, 59, 59, 999000, tzinfo=UTC)
    assert summary.last_time == datetime(2019, 3, 31, 1, 0, 0, tzinfo=UTC)
    assert summary.organizations == frozenset({ORG, OTHER_ORG})


def test_last_line_may_lack_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "s.ndjson"
    path.write_bytes(_line() + b"\n" + _line(session_id="s2"))
    assert validate_file(path).rows == 2


def test_rows_are_normalized_for_loaders(tmp_path: Path) -> None:
    sparse = _line(city=..., rooms=..., ip_organization=..., distinct_referrer_urls=..., device_type=None)
    path = _write(tmp_path / "s.ndjson", sparse)
    (row,) = iter_sessions(path)
    assert row == {
        **{key: value for key, value in GOOD.items() if key != "timestamp"},
        "timestamp_ms": 1546293600000,
        "city": None,
        "device_type": None,
        "distinct_referrer_urls": [],
        "rooms": [],
    }
    assert list(row)[:2] == ["timestamp_ms", "organization_id"]


def test_sub_millisecond_digits_are_truncated(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.ndjson", _line(timestamp="1970-01-01T00:00:00.0019999Z"))
    assert next(iter_sessions(path))["timestamp_ms"] == 1


def test_summaries_combine(tmp_path: Path) -> None:
    first = validate_file(_write(tmp_path / "a.ndjson", _line()))
    second = validate_file(
        _write(tmp_path / "b.ndjson", _line(timestamp="2020-01-01T00:00:00Z", organization_id=OTHER_ORG))
    )
    assert combine([first, second]) == type(first)(
        rows=2,
        first_time=first.first_time,
        last_time=second.last_time,
        organizations=frozenset({ORG, OTHER_ORG}),
    )
