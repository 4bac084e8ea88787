"""The NDJSON input contract: which lines are refused, with what message, and what a good file yields."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxyctl.ingest.ndjson import InvalidLine, combine, iter_sessions, validate_file
from tests.support.ids import ORG
from tests.support.session_lines import BAD_LINES, GOOD, line

OTHER_ORG = "0b7e2a9c-1d3f-4e5a-9b8c-7d6e5f4a3b2c"


def _write(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(raw + b"\n" for raw in lines))
    return path


@pytest.mark.parametrize(("bad", "reason"), [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES])
def test_first_bad_line_is_reported_with_its_number(tmp_path: Path, bad: bytes, reason: str) -> None:
    path = _write(tmp_path / "sessions.ndjson", line(), line(session_id="s2"), bad, b"not even json")
    with pytest.raises(InvalidLine) as caught:
        validate_file(path)
    assert (caught.value.line_number, caught.value.reason[: len(reason)]) == (3, reason)
    assert str(caught.value) == f"{path}:3: {caught.value.reason}"


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_file_of_one_out_of_range_time_is_an_invalidline(tmp_path: Path, timestamp: str) -> None:
    path = _write(tmp_path / "sessions.ndjson", line(timestamp=timestamp))
    with pytest.raises(InvalidLine, match=r":1: timestamp .* is outside"):
        validate_file(path)


def test_message_names_file_andline(tmp_path: Path) -> None:
    path = _write(tmp_path / "sessions.ndjson", line(session_duration_secs=-5))
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
        line(),
        line(timestamp="2019-03-31T03:00:00.5+03:00", organization_id=OTHER_ORG),
        line(timestamp="2018-12-31T21:59:59.999Z"),
        line(timestamp="2019-03-31T01:00:00Z"),
    )
    summary = validate_file(path)
    assert summary.rows == 4
    assert summary.first_time == datetime(2018, 12, 31, 21, 59, 59, 999000, tzinfo=UTC)
    assert summary.last_time == datetime(2019, 3, 31, 1, 0, 0, tzinfo=UTC)
    assert summary.organizations == frozenset({ORG, OTHER_ORG})


def test_last_line_may_lack_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "s.ndjson"
    path.write_bytes(line() + b"\n" + line(session_id="s2"))
    assert validate_file(path).rows == 2


def test_rows_are_normalized_for_loaders(tmp_path: Path) -> None:
    sparse = line(city=..., rooms=..., ip_organization=..., distinct_referrer_urls=..., device_type=None)
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
    path = _write(tmp_path / "s.ndjson", line(timestamp="1970-01-01T00:00:00.0019999Z"))
    assert next(iter_sessions(path))["timestamp_ms"] == 1


def test_summaries_combine(tmp_path: Path) -> None:
    first = validate_file(_write(tmp_path / "a.ndjson", line()))
    second = validate_file(
        _write(tmp_path / "b.ndjson", line(timestamp="2020-01-01T00:00:00Z", organization_id=OTHER_ORG))
    )
    assert combine([first, second]) == type(first)(
        rows=2,
        first_time=first.first_time,
        last_time=second.last_time,
        organizations=frozenset({ORG, OTHER_ORG}),
    )
