"""The pure parts of the Druid loader: which days a load replaces, how it splits them by month,
and the spec it submits."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from proxyctl.ingest.druid_loader import (
    DruidLoadError,
    Part,
    covered_days,
    ingestion_spec,
    month_intervals,
    split_by_month,
)


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (
            "2024-03-01T10:00:00+00:00",
            "2024-03-01T10:00:00+00:00",
            "2024-03-01T00:00:00Z/2024-03-02T00:00:00Z",
        ),
        (
            "2024-03-01T00:00:00+00:00",
            "2024-03-02T23:59:59.999+00:00",
            "2024-03-01T00:00:00Z/2024-03-03T00:00:00Z",
        ),
        # Local offsets are converted first: 01:00+02:00 is the previous UTC day.
        (
            "2024-03-02T01:00:00+02:00",
            "2024-03-02T01:00:00+02:00",
            "2024-03-01T00:00:00Z/2024-03-02T00:00:00Z",
        ),
        (
            "2023-12-31T23:30:00-01:00",
            "2024-01-01T00:00:00+00:00",
            "2024-01-01T00:00:00Z/2024-01-02T00:00:00Z",
        ),
    ],
)
def test_covered_days(first: str, last: str, expected: str) -> None:
    assert covered_days(datetime.fromisoformat(first), datetime.fromisoformat(last)) == expected


def test_ingestion_spec_fills_datasource_files_and_interval(tmp_path: Path) -> None:
    interval = "2024-03-01T00:00:00Z/2024-03-02T00:00:00Z"
    spec = ingestion_spec([tmp_path / "a.ndjson", tmp_path / "b.ndjson"], "ds", interval)
    body = spec["spec"]
    assert (
        body["dataSchema"]["dataSource"],
        body["dataSchema"]["granularitySpec"]["intervals"],
        body["ioConfig"]["inputSource"],
    ) == (
        "ds",
        [interval],
        {"type": "local", "files": [str(tmp_path / "a.ndjson"), str(tmp_path / "b.ndjson")]},
    )


def test_ingestion_spec_never_mutates_the_template(tmp_path: Path) -> None:
    first = ingestion_spec([tmp_path / "a.ndjson"], "one", "2024-01-01/2024-01-02")
    second = ingestion_spec([tmp_path / "b.ndjson"], "two", "2024-02-01/2024-02-02")
    assert first["spec"]["dataSchema"]["dataSource"] == "one"
    assert second["spec"]["ioConfig"]["inputSource"]["files"] == [str(tmp_path / "b.ndjson")]


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("2024-03-01T00:00:00Z/2024-03-03T00:00:00Z", ["2024-03-01T00:00:00Z/2024-03-03T00:00:00Z"]),
        ("2024-03-31T00:00:00Z/2024-04-01T00:00:00Z", ["2024-03-31T00:00:00Z/2024-04-01T00:00:00Z"]),
        (
            "2024-01-30T00:00:00Z/2024-03-02T00:00:00Z",
            [
                "2024-01-30T00:00:00Z/2024-02-01T00:00:00Z",
                "2024-02-01T00:00:00Z/2024-03-01T00:00:00Z",
                "2024-03-01T00:00:00Z/2024-03-02T00:00:00Z",
            ],
        ),
        (
            "2023-12-31T00:00:00Z/2024-01-02T00:00:00Z",
            [
                "2023-12-31T00:00:00Z/2024-01-01T00:00:00Z",
                "2024-01-01T00:00:00Z/2024-01-02T00:00:00Z",
            ],
        ),
    ],
)
def test_month_intervals(interval: str, expected: list[str]) -> None:
    assert month_intervals(interval) == expected


def _line(timestamp: str, session_id: str) -> bytes:
    return f'{{"timestamp":"{timestamp}","session_id":"{session_id}"}}\n'.encode()


def test_split_by_month_writes_each_row_once_to_its_utc_month(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    first, second = tmp_path / "in" / "a.ndjson", tmp_path / "in" / "b.ndjson"
    # 00:30+02:00 on March 1st is still February in UTC; b's last line has no newline.
    first.write_bytes(_line("2024-01-31T23:59:59.999Z", "s1") + _line("2024-03-01T00:30:00+02:00", "s2"))
    second.write_bytes(_line("2024-03-01T00:00:00Z", "s3") + _line("2024-03-01T12:00:00Z", "s4").rstrip())
    parts = split_by_month([first, second], "2024-01-31T00:00:00Z/2024-03-02T00:00:00Z", tmp_path)
    assert parts == [
        Part("2024-01-31T00:00:00Z/2024-02-01T00:00:00Z", (tmp_path / "2024-01.ndjson",), 1),
        Part("2024-02-01T00:00:00Z/2024-03-01T00:00:00Z", (tmp_path / "2024-02.ndjson",), 1),
        Part("2024-03-01T00:00:00Z/2024-03-02T00:00:00Z", (tmp_path / "2024-03.ndjson",), 2),
    ]
    assert [(tmp_path / f"2024-0{m}.ndjson").read_bytes().count(b"\n") for m in (1, 2, 3)] == [1, 1, 2]
    assert (tmp_path / "2024-03.ndjson").read_bytes().endswith(b'"s4"}\n')


def test_a_month_without_rows_is_replaced_with_the_month_before(tmp_path: Path) -> None:
    source = tmp_path / "in.ndjson"
    source.write_bytes(_line("2024-01-15T00:00:00Z", "s1") + _line("2024-04-01T00:00:00Z", "s2"))
    parts = split_by_month([source], "2024-01-15T00:00:00Z/2024-04-02T00:00:00Z", tmp_path)
    assert [(p.interval, p.rows) for p in parts] == [
        ("2024-01-15T00:00:00Z/2024-04-01T00:00:00Z", 1),
        ("2024-04-01T00:00:00Z/2024-04-02T00:00:00Z", 1),
    ]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (_line("2024-05-01T00:00:00Z", "late"), DruidLoadError),
        (b'{"session_id":"no time"}\n', ValueError),
    ],
)
def test_a_row_the_split_cannot_place_fails_it(tmp_path: Path, line: bytes, error: type[Exception]) -> None:
    source = tmp_path / "in.ndjson"
    source.write_bytes(_line("2024-01-15T00:00:00Z", "s1") + line)
    with pytest.raises(error):
        split_by_month([source], "2024-01-15T00:00:00Z/2024-02-02T00:00:00Z", tmp_path)
