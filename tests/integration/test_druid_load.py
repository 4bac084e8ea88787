"""A small session file loaded into the real local Druid: replaced, not appended; MVD, long."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from proxyctl.ingest import druid_loader
from proxyctl.ingest.druid_loader import DruidLoadError, LoadResult, ingestion_spec, load_into_druid
from tests.support.served import BROKER, OVERLORD, require_druid

DATASOURCE = "it_druid_load"
ORG = "0b6f9c1e-2d3a-4b5c-8d7e-9f0a1b2c3d4e"
INTERVAL = "2024-03-01T00:00:00Z/2024-03-03T00:00:00Z"

pytestmark = pytest.mark.integration


def _session(ts: str, sid: str, duration: int, rooms: list[str], city: str | None) -> dict[str, Any]:
    return {
        "timestamp": ts,
        "organization_id": ORG,
        "session_id": sid,
        "visitor_id": f"v-{sid}",
        "browser_name": "Firefox",
        "browser_version": "123.0",
        "city": city,
        "country": "FI",
        "device_type": "desktop",
        "os_name": "Linux",
        "ip_organization": None,
        "distinct_visited_urls": ["/a", "/b"],
        "distinct_landing_urls": ["/a"],
        "distinct_referrer_urls": [],
        "distinct_search_terms": [],
        "rooms": rooms,
        "session_duration_secs": duration,
        "distinct_visited_urls_count": 2,
    }


# The +02:00 session falls on the previous UTC day: the load covers 2024-03-01 and 03-02 (UTC).
SESSIONS = [
    _session("2024-03-01T10:00:00Z", "s1", 9, ["lobby", "sales"], "Helsinki"),
    _session("2024-03-01T11:30:00.250Z", "s2", 20, [], "Espoo"),
    _session("2024-03-02T01:00:00+02:00", "s3", 100, ["sales"], None),
    _session("2024-03-02T09:15:00Z", "s4", 0, [], "Helsinki"),
    _session("2024-03-02T23:59:59Z", "s5", 45, ["lobby"], "Tampere"),
]


@dataclass(frozen=True)
class Summary:
    rows: int
    first_time: datetime
    last_time: datetime


def _summary() -> Summary:
    times = [datetime.fromisoformat(s["timestamp"]) for s in SESSIONS]
    return Summary(len(SESSIONS), min(times), max(times))


def _query(body: dict[str, Any]) -> list[dict[str, Any]]:
    response = requests.post(f"{BROKER}/druid/v2/", json=body, timeout=30)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


def _count(filter_: dict[str, Any] | None = None) -> int:
    rows = _query(
        {
            "queryType": "timeseries",
            "dataSource": DATASOURCE,
            "intervals": [INTERVAL],
            "granularity": "all",
            "filter": filter_,
            "aggregations": [{"type": "count", "name": "n"}],
        }
    )
    return int(rows[0]["result"]["n"]) if rows else 0


def _served_versions() -> set[str]:
    """The versions of the segments the broker would query for the interval, now."""
    url = f"{BROKER}/druid/v2/datasources/{DATASOURCE}/candidates"
    response = requests.get(url, params={"intervals": INTERVAL}, timeout=30)
    assert response.status_code == 200, response.text
    return {segment["version"] for segment in response.json()}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[LoadResult, set[str]]]:
    """The same file loaded twice; with each load, the versions the broker served as it returned."""
    path = tmp_path_factory.mktemp("druid-load") / "sessions.ndjson"
    path.write_text("".join(json.dumps(s) + "\n" for s in SESSIONS))
    require_druid()
    return [
        (
            load_into_druid([path], _summary(), OVERLORD, OVERLORD, BROKER, DATASOURCE, print),
            _served_versions(),
        )
        for _ in range(2)
    ]


@pytest.fixture(scope="module")
def loads(loaded: list[tuple[LoadResult, set[str]]]) -> list[LoadResult]:
    return [result for result, _ in loaded]


def test_each_load_ingests_every_row(loads: list[LoadResult]) -> None:
    assert [(r.rows_ingested, r.rows_rejected) for r in loads] == [(5, 0), (5, 0)]


def test_a_load_returns_once_the_broker_serves_its_segments(
    loaded: list[tuple[LoadResult, set[str]]],
) -> None:
    # The second load has as many rows as the first: counting rows cannot tell them apart.
    (first,), (second,) = (versions for _, versions in loaded)
    assert second > first


def test_load_replaces_the_covered_days(loads: list[LoadResult]) -> None:
    assert [r.interval for r in loads] == [INTERVAL, INTERVAL]
    assert _count() == len(SESSIONS)


def test_empty_array_groups_as_null(loads: list[LoadResult]) -> None:
    rows = _query(
        {
            "queryType": "groupBy",
            "dataSource": DATASOURCE,
            "intervals": [INTERVAL],
            "granularity": "all",
            "dimensions": ["rooms"],
            "aggregations": [{"type": "count", "name": "n"}],
        }
    )
    assert [(r["event"]["rooms"], r["event"]["n"]) for r in rows] == [
        (None, 2),
        ("lobby", 2),
        ("sales", 2),
    ]


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        # 20, 45, 100 are >= 10; as strings "9" >= "10" too, and "0" is not.
        ("numeric", 3),
        ("lexicographic", 4),
    ],
)
def test_long_dimension_bound(loads: list[LoadResult], ordering: str, expected: int) -> None:
    bound = {"type": "bound", "dimension": "session_duration_secs", "lower": "10", "ordering": ordering}
    assert _count(bound) == expected


def test_long_dimension_range_is_numeric(loads: list[LoadResult]) -> None:
    range_ = {
        "type": "range",
        "column": "session_duration_secs",
        "matchValueType": "LONG",
        "lower": 10,
        "upper": 100,
        "upperOpen": True,
    }
    assert _count(range_) == 2


def test_a_rejected_row_fails_the_load_and_keeps_the_days(loads: list[LoadResult], tmp_path: Path) -> None:
    path = tmp_path / "bad.ndjson"
    bad = {**SESSIONS[0], "timestamp": "yesterday"}
    path.write_text(json.dumps(SESSIONS[1]) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DruidLoadError, match=r"FAILED: .*Timestamp\[yesterday\] is unparseable"):
        load_into_druid([path], _summary(), OVERLORD, OVERLORD, BROKER, DATASOURCE, print)
    assert _count() == len(SESSIONS)


def test_a_missing_file_is_refused_before_druid_sees_it(loads: list[LoadResult]) -> None:
    with pytest.raises(DruidLoadError, match="no such input file"):
        load_into_druid(
            [Path("/nonexistent/sessions.ndjson")], _summary(), OVERLORD, OVERLORD, BROKER, DATASOURCE, print
        )


SPAN_DATASOURCE = "it_druid_load_months"
SPAN = "2024-01-01T00:00:00Z/2024-04-01T00:00:00Z"
# Every day of SPAN replaced first (whatever an earlier run left), a row in each month.
WHOLE_SPAN = [
    _session("2024-01-01T00:00:00Z", "w1", 1, [], "Oulu"),
    _session("2024-02-15T12:00:00Z", "w2", 2, [], "Vaasa"),
    _session("2024-03-31T23:59:59Z", "w3", 3, [], "Turku"),
]
# Then January 20th to March 5th: January and March hold rows, February none, so the January
# task also replaces February.
SPANNING = [
    _session("2024-01-20T08:00:00Z", "m1", 5, [], "Oulu"),
    _session("2024-01-31T23:59:59Z", "m2", 6, [], "Oulu"),
    _session("2024-03-05T12:00:00Z", "m3", 7, [], "Turku"),
]


def _counts_by(granularity: str, datasource: str, interval: str) -> dict[str, int]:
    """Rows per month or day (`granularity`) of `interval`, the empty ones left out."""
    rows = _query(
        {
            "queryType": "timeseries",
            "dataSource": datasource,
            "intervals": [interval],
            "granularity": granularity,
            "aggregations": [{"type": "count", "name": "n"}],
            "context": {"useCache": False, "populateCache": False},
        }
    )
    stamp = {"month": len("2024-01"), "day": len("2024-01-01")}[granularity]
    return {row["timestamp"][:stamp]: int(row["result"]["n"]) for row in rows if row["result"]["n"]}


def _load(path: Path, sessions: list[dict[str, Any]]) -> LoadResult:
    path.write_text("".join(json.dumps(s) + "\n" for s in sessions))
    times = [datetime.fromisoformat(s["timestamp"]) for s in sessions]
    summary = Summary(len(sessions), min(times), max(times))
    return load_into_druid([path], summary, OVERLORD, OVERLORD, BROKER, SPAN_DATASOURCE, print)


def test_a_load_over_months_runs_a_task_per_month_and_replaces_every_covered_day(tmp_path: Path) -> None:
    whole = _load(tmp_path / "whole.ndjson", WHOLE_SPAN)
    assert (len(whole.task_ids), whole.interval) == (3, "2024-01-01T00:00:00Z/2024-04-01T00:00:00Z")
    assert _counts_by("month", SPAN_DATASOURCE, SPAN) == {"2024-01": 1, "2024-02": 1, "2024-03": 1}
    result = _load(tmp_path / "span.ndjson", SPANNING)
    assert (len(result.task_ids), result.interval, result.rows_ingested, result.rows_rejected) == (
        2,
        "2024-01-20T00:00:00Z/2024-03-06T00:00:00Z",
        3,
        0,
    )
    # Kept: January 1st and March 31st. Replaced: everything between, February's row included.
    assert _counts_by("month", SPAN_DATASOURCE, SPAN) == {"2024-01": 3, "2024-03": 2}


PARTIAL_DATASOURCE = "it_druid_load_partial"
MARCH = "2024-03-01T00:00:00Z/2024-04-01T00:00:00Z"
MARCH_1 = "2024-03-01T00:00:00Z/2024-03-02T00:00:00Z"


def _month_segment_spec(paths: Sequence[Path], datasource: str, interval: str) -> dict[str, Any]:
    """The loader's spec with MONTH segments, as auto-compaction leaves a datasource."""
    spec = ingestion_spec(paths, datasource, interval)
    spec["spec"]["dataSchema"]["granularitySpec"]["segmentGranularity"] = "month"
    return spec


def test_a_day_load_over_an_older_month_segment_returns_once_its_day_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The month segment is neither overshadowed (only one day of it is replaced) nor a segment
    # of the day: the broker serves the new day and the month elsewhere.
    path = tmp_path / "sessions.ndjson"
    with monkeypatch.context() as patched:
        patched.setattr(druid_loader, "ingestion_spec", _month_segment_spec)
        path.write_text("".join(json.dumps(s) + "\n" for s in SESSIONS))
        load_into_druid([path], _summary(), OVERLORD, OVERLORD, BROKER, PARTIAL_DATASOURCE, print)
    assert _counts_by("day", PARTIAL_DATASOURCE, MARCH) == {"2024-03-01": 3, "2024-03-02": 2}
    path.write_text(json.dumps(SESSIONS[0]) + "\n")
    day = Summary(1, *[datetime.fromisoformat(SESSIONS[0]["timestamp"])] * 2)
    result = load_into_druid([path], day, OVERLORD, OVERLORD, BROKER, PARTIAL_DATASOURCE, print, 300.0)
    assert (result.interval, result.rows_ingested) == (MARCH_1, 1)
    assert _counts_by("day", PARTIAL_DATASOURCE, MARCH) == {"2024-03-01": 1, "2024-03-02": 2}
