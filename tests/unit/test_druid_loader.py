"""The pure parts of the Druid loader: which days a load replaces, and the spec it submits."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from proxy.ingest.druid_loader import covered_days, ingestion_spec


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        ("2024-03-01T10:00:00+00:00", "2024-03-01T10:00:00+00:00",
         "2024-03-01T00:00:00Z/2024-03-02T00:00:00Z"),
        ("2024-03-01T00:00:00+00:00", "2024-03-02T23:59:59.999+00:00",
         "2024-03-01T00:00:00Z/2024-03-03T00:00:00Z"),
        # Local offsets are converted first: 01:00+02:00 is the previous UTC day.
        ("2024-03-02T01:00:00+02:00", "2024-03-02T01:00:00+02:00",
         "2024-03-01T00:00:00Z/2024-03-02T00:00:00Z"),
        ("2023-12-31T23:30:00-01:00", "2024-01-01T00:00:00+00:00",
         "2024-01-01T00:00:00Z/2024-01-02T00:00:00Z"),
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
