"""The Druid loader: which days a load replaces, how it splits them by month, the spec it
submits, and its overlord, coordinator and broker calls mocked at the transport."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from proxyctl.ingest import druid_loader
from proxyctl.ingest.druid_loader import (
    DruidLoadError,
    LoadResult,
    Part,
    covered_days,
    ingestion_spec,
    load_into_druid,
    month_intervals,
    split_by_month,
)
from proxyctl.ingest.ndjson import FileSummary


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


OVERLORD = "http://overlord.test:8081"
BROKER = "http://broker.test:8082"
DATASOURCE = "sessions_ds"
TASK = "index_parallel_sessions_ds_abc"
MARCH_1 = "2024-03-01T00:00:00Z/2024-03-02T00:00:00Z"
TASK_URL = f"{OVERLORD}/druid/indexer/v1/task"
STATUS_URL = f"{TASK_URL}/{TASK}/status"
REPORTS_URL = f"{TASK_URL}/{TASK}/reports"
LOAD_STATUS_URL = f"{OVERLORD}/druid/coordinator/v1/datasources/{DATASOURCE}/loadstatus"
METADATA_URL = f"{OVERLORD}/druid/coordinator/v1/metadata/segments"
CANDIDATES_URL = f"{BROKER}/druid/v2/datasources/{DATASOURCE}/candidates"
MARCH_1_SEGMENT = "2024-03-01T00:00:00.000Z/2024-03-02T00:00:00.000Z"
OLD, NEW = "2026-12-01T10:00:00.000Z", "2026-12-03T10:00:00.000Z"
COUNT_QUERY = {
    "queryType": "timeseries",
    "dataSource": DATASOURCE,
    "intervals": [MARCH_1],
    "granularity": "all",
    "aggregations": [{"type": "count", "name": "rows"}],
    "context": {"timeout": 30_000, "useCache": False, "populateCache": False},
}


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch) -> Iterator[responses.RequestsMock]:
    monkeypatch.setattr(druid_loader, "_POLL_SECS", 0.0)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def march_file(tmp_path: Path) -> Path:
    path = tmp_path / "march.ndjson"
    path.write_bytes(_line("2024-03-01T10:00:00Z", "s1") * 3)
    return path


def _summary(rows: int, first: str, last: str) -> FileSummary:
    moments = (
        datetime.fromisoformat(first).replace(tzinfo=UTC),
        datetime.fromisoformat(last).replace(tzinfo=UTC),
    )
    return FileSummary(rows, *moments, frozenset({"org"}))


MARCH_SUMMARY = _summary(3, "2024-03-01T10:00:00", "2024-03-01T10:00:00")


def _load(
    paths: list[Path], summary: FileSummary, echoed: list[str], timeout_secs: float = 60.0
) -> LoadResult:
    return load_into_druid(
        paths, summary, OVERLORD, OVERLORD, BROKER, DATASOURCE, echoed.append, timeout_secs
    )


def _status(state: str, **extra: str) -> dict[str, Any]:
    return {"status": {"id": TASK, "statusCode": state, **extra}}


def _reports(processed: int, unparseable: int = 0, details: list[str] | None = None) -> dict[str, Any]:
    build = {"processed": processed, "processedWithError": 0, "unparseable": unparseable, "thrownAway": 0}
    events = {"buildSegments": [{"details": details}]} if details else {}
    return {
        "ingestionStatsAndErrors": {
            "payload": {"rowStats": {"buildSegments": build}, "unparseableEvents": events}
        }
    }


def _accept_task(http: responses.RequestsMock, spec: dict[str, Any]) -> None:
    http.post(TASK_URL, json={"task": TASK}, match=[matchers.json_params_matcher(spec)])


def _becomes_queryable(http: responses.RequestsMock, rows: int) -> None:
    loaded = matchers.query_param_matcher({"forceMetadataRefresh": "true", "interval": MARCH_1})
    http.get(LOAD_STATUS_URL, json={DATASOURCE: 50.0}, match=[loaded])
    http.get(LOAD_STATUS_URL, json={DATASOURCE: 100.0}, match=[loaded])
    _becomes_served(http, [OLD, NEW])
    counted = matchers.json_params_matcher(COUNT_QUERY)
    http.post(f"{BROKER}/druid/v2/", json=[], match=[counted])
    http.post(f"{BROKER}/druid/v2/", json=[{"result": {"rows": rows}}], match=[counted])


def _published(
    version: str,
    overshadowed: bool = False,
    interval: str = MARCH_1_SEGMENT,
    shard: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A segment as the coordinator's `metadata/segments` lists it (the fields the loader reads)."""
    return {
        "interval": interval,
        "version": version,
        "overshadowed": overshadowed,
        "shardSpec": shard or {"type": "numbered", "partitionNum": 0, "partitions": 1},
    }


def _candidate(version: str, interval: str = MARCH_1_SEGMENT, partition: int = 0) -> dict[str, Any]:
    """A segment as the broker's `candidates` lists it, its interval clipped to the one asked."""
    return {"interval": interval, "version": version, "partitionNumber": partition, "locations": []}


def _becomes_served(http: responses.RequestsMock, versions: list[str]) -> None:
    """The coordinator has published NEW over OLD; the broker serves each of `versions` in turn."""
    listed = matchers.query_param_matcher({"datasources": DATASOURCE, "includeOvershadowedStatus": "true"})
    elsewhere = {**_published(OLD), "interval": "2024-02-29T00:00:00.000Z/2024-03-01T00:00:00.000Z"}
    published = [_published(OLD, overshadowed=True), _published(NEW), elsewhere]
    for version in versions:
        http.get(METADATA_URL, json=published, match=[listed])
        asked = matchers.query_param_matcher({"intervals": MARCH_1})
        http.get(CANDIDATES_URL, json=[_candidate(version)], match=[asked])


def test_a_load_submits_follows_and_waits_until_the_broker_counts_its_rows(
    http: responses.RequestsMock, march_file: Path
) -> None:
    _accept_task(http, ingestion_spec([march_file], DATASOURCE, MARCH_1))
    http.get(STATUS_URL, json=_status("RUNNING", runnerStatusCode="RUNNING"))
    http.get(STATUS_URL, json=_status("SUCCESS"))
    http.get(REPORTS_URL, json=_reports(processed=3))
    _becomes_queryable(http, rows=3)
    echoed: list[str] = []
    result = _load([march_file], MARCH_SUMMARY, echoed)
    assert (result.task_ids, result.interval, result.rows_ingested, result.rows_rejected) == (
        (TASK,),
        MARCH_1,
        3,
        0,
    )
    assert [line.split(" (")[0] for line in echoed] == [
        f"druid: task {TASK} replaces {MARCH_1}",
        "druid: task RUNNING",
        "druid: task SUCCESS: 3 rows ingested, 0 rejected",
        "druid: segments loaded",
        "druid: broker serves the 1 new segments",
        "druid: broker counts 3 rows",
    ]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"status": 400, "body": "bad spec"}, "overlord refused the task: HTTP 400: bad spec"),
        ({"body": requests.ConnectionError("refused")}, f"cannot submit the task to {TASK_URL}: refused"),
    ],
)
def test_a_task_the_overlord_does_not_take_fails_the_load(
    http: responses.RequestsMock, march_file: Path, answer: dict[str, Any], message: str
) -> None:
    http.post(TASK_URL, **answer)
    with pytest.raises(DruidLoadError) as caught:
        _load([march_file], MARCH_SUMMARY, [])
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("reports", "reason"),
    [
        ({"json": _reports(0, 1, ["Unable to parse row [x]"])}, "out of memory; Unable to parse row [x]"),
        ({"status": 404, "body": "no reports"}, "out of memory"),
    ],
)
def test_a_failed_task_names_its_error_and_first_rejected_row(
    http: responses.RequestsMock, march_file: Path, reports: dict[str, Any], reason: str
) -> None:
    _accept_task(http, ingestion_spec([march_file], DATASOURCE, MARCH_1))
    http.get(STATUS_URL, json=_status("FAILED", errorMsg="out of memory\n\tat java.Thread"))
    http.get(REPORTS_URL, **reports)
    with pytest.raises(DruidLoadError) as caught:
        _load([march_file], MARCH_SUMMARY, [])
    assert str(caught.value) == f"task {TASK} FAILED: {reason}"


def test_a_status_the_overlord_cannot_give_fails_the_load(
    http: responses.RequestsMock, march_file: Path
) -> None:
    _accept_task(http, ingestion_spec([march_file], DATASOURCE, MARCH_1))
    http.get(STATUS_URL, status=503, body="leader unknown")
    with pytest.raises(DruidLoadError) as caught:
        _load([march_file], MARCH_SUMMARY, [])
    assert str(caught.value) == f"GET {STATUS_URL}: HTTP 503: leader unknown"


def _task_succeeds_and_is_loaded(http: responses.RequestsMock, march_file: Path) -> None:
    """The March 1st task is taken, succeeds with its 3 rows, and the coordinator has it loaded."""
    _accept_task(http, ingestion_spec([march_file], DATASOURCE, MARCH_1))
    http.get(STATUS_URL, json=_status("SUCCESS"))
    http.get(REPORTS_URL, json=_reports(processed=3))
    http.get(LOAD_STATUS_URL, json={DATASOURCE: 100.0})


def test_a_broker_that_never_counts_the_rows_ends_the_wait_at_the_deadline(
    http: responses.RequestsMock, march_file: Path
) -> None:
    _task_succeeds_and_is_loaded(http, march_file)
    _becomes_served(http, [NEW])
    http.post(f"{BROKER}/druid/v2/", json=[{"result": {"rows": 2}}])
    with pytest.raises(DruidLoadError) as caught:
        _load([march_file], MARCH_SUMMARY, [], timeout_secs=0.0)
    assert str(caught.value) == "gave up waiting: broker counts 2 rows, expected 3"


def test_a_broker_still_serving_the_replaced_segments_ends_the_wait_at_the_deadline(
    http: responses.RequestsMock, march_file: Path
) -> None:
    # As many rows in the old segments as in the new: only their versions tell them apart.
    _task_succeeds_and_is_loaded(http, march_file)
    _becomes_served(http, [OLD])
    with pytest.raises(DruidLoadError) as caught:
        _load([march_file], MARCH_SUMMARY, [], timeout_secs=0.0)
    assert str(caught.value) == f"gave up waiting: broker serves 0 of 1 new segments of {MARCH_1}"


WHERE = druid_loader._Endpoints(OVERLORD, OVERLORD, BROKER, DATASOURCE)
# Shapes as the local Druid 33 gives them: a MONTH segment (as compaction leaves it) partly
# replaced by a day load is not overshadowed, and the broker clips it to the interval asked.
MARCH_SEGMENT = "2024-03-01T00:00:00.000Z/2024-04-01T00:00:00.000Z"
MARCH_2_SEGMENT = "2024-03-02T00:00:00.000Z/2024-03-03T00:00:00.000Z"
ETERNITY = "-146136543-09-08T08:23:32.096Z/146140482-04-24T15:36:27.903Z"


@pytest.mark.parametrize(
    ("segment", "wanted"),
    [
        (_published(NEW), {(MARCH_1_SEGMENT, NEW, 0)}),
        (_published(OLD, overshadowed=True), set()),
        (_published(NEW, shard={"type": "tombstone", "partitionNum": 0}), set()),
        (
            _published(
                NEW, shard={"type": "numbered_overwrite", "partitionId": 32768, "startRootPartitionId": 0}
            ),
            {(MARCH_1_SEGMENT, NEW, 32768)},
        ),
        (_published(OLD, interval=MARCH_SEGMENT), set()),
        (_published(OLD, interval="2024-02-29T00:00:00.000Z/2024-03-01T00:00:00.000Z"), set()),
        (_published(OLD, interval=ETERNITY), set()),
        (_published(OLD, interval="2024-03-01T00:00:00.000Z/10000-01-01T00:00:00.000Z"), set()),
    ],
    ids=[
        "new",
        "overshadowed",
        "tombstone",
        "numbered-overwrite",
        "month",
        "elsewhere",
        "eternity",
        "year-10000",
    ],
)
def test_the_wanted_segments_are_those_within_the_interval_nothing_overshadows_and_not_tombstones(
    http: responses.RequestsMock, segment: dict[str, Any], wanted: set[tuple[str, str, int]]
) -> None:
    http.get(METADATA_URL, json=[segment])
    assert druid_loader._wanted_segments(requests.Session(), WHERE, MARCH_1) == wanted


@pytest.mark.parametrize(
    ("published", "candidates"),
    [
        ([_published(OLD, interval=MARCH_SEGMENT), _published(NEW)], [_candidate(NEW)]),
        # A query of two days: the new March 1st and the month, clipped to March 2nd.
        (
            [_published(OLD, interval=MARCH_SEGMENT), _published(NEW)],
            [_candidate(NEW), _candidate(OLD, interval=MARCH_2_SEGMENT)],
        ),
        # A realtime segment the metadata does not list yet.
        ([_published(NEW)], [_candidate(NEW), _candidate("2026-12-03T11:00:00.000Z")]),
        ([_published(NEW, interval=ETERNITY), _published(NEW)], [_candidate(NEW)]),
    ],
    ids=["month-partly-replaced", "month-clipped", "realtime", "eternity"],
)
def test_the_wait_ends_once_the_broker_serves_every_wanted_segment(
    http: responses.RequestsMock, published: list[dict[str, Any]], candidates: list[dict[str, Any]]
) -> None:
    http.get(METADATA_URL, json=published)
    http.get(CANDIDATES_URL, json=candidates)
    echoed: list[str] = []
    druid_loader._wait_served(requests.Session(), WHERE, MARCH_1, time.monotonic(), echoed.append)
    assert [line.split(" (")[0] for line in echoed] == ["druid: broker serves the 1 new segments"]


@pytest.mark.parametrize(
    ("published", "candidates", "waiting"),
    [
        ([_published(OLD, overshadowed=True), _published(NEW)], [_candidate(OLD)], "0 of 1"),
        # One of the new version's two partitions is loaded: the broker's timeline keeps the old
        # version until the new one is complete.
        (
            [
                _published(NEW),
                _published(NEW, shard={"type": "numbered", "partitionNum": 1, "partitions": 2}),
            ],
            [_candidate(NEW)],
            "1 of 2",
        ),
    ],
    ids=["old-version", "one-of-two-partitions"],
)
def test_a_broker_serving_less_than_the_wanted_segments_ends_the_wait_at_the_deadline(
    http: responses.RequestsMock,
    published: list[dict[str, Any]],
    candidates: list[dict[str, Any]],
    waiting: str,
) -> None:
    http.get(METADATA_URL, json=published)
    http.get(CANDIDATES_URL, json=candidates)
    with pytest.raises(DruidLoadError) as caught:
        druid_loader._wait_served(requests.Session(), WHERE, MARCH_1, time.monotonic(), [].append)
    assert str(caught.value) == f"gave up waiting: broker serves {waiting} new segments of {MARCH_1}"


def test_a_failed_later_month_says_the_earlier_months_are_replaced(
    http: responses.RequestsMock, tmp_path: Path
) -> None:
    source = tmp_path / "two-months.ndjson"
    source.write_bytes(_line("2024-02-29T10:00:00Z", "s1") + _line("2024-03-01T10:00:00Z", "s2"))
    http.post(TASK_URL, json={"task": TASK})
    http.get(STATUS_URL, json=_status("SUCCESS"))
    http.get(REPORTS_URL, json=_reports(processed=1))
    http.get(LOAD_STATUS_URL, json={DATASOURCE: 100.0})
    http.get(METADATA_URL, json=[])
    http.get(CANDIDATES_URL, json=[])
    http.post(f"{BROKER}/druid/v2/", json=[{"result": {"rows": 1}}])
    http.post(TASK_URL, status=500, body="overlord down")
    with pytest.raises(DruidLoadError, match=r"\(months 1-1 of 2 are replaced; loading the same files again"):
        _load([source], _summary(2, "2024-02-29T10:00:00", "2024-03-01T10:00:00"), [])


def test_a_missing_input_file_fails_before_any_request(http: responses.RequestsMock, tmp_path: Path) -> None:
    with pytest.raises(DruidLoadError, match=r"^no such input file"):
        _load([tmp_path / "absent.ndjson"], _summary(1, "2024-03-01T10:00:00", "2024-03-01T10:00:00"), [])
