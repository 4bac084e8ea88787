"""Load validated session files into Druid, replacing the UTC days they cover.

A load submits one `index_parallel` task built from `druid_specs/visitor_sessions.json`, follows
it to SUCCESS, then waits until the coordinator reports the new segments loaded and the broker
counts exactly the ingested rows. Errors:

    DruidLoadError          the task was refused, failed, or the data never became queryable
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from druid_specs import load_spec
from proxy.ingest.ndjson import FileSummary


_TIMEOUT = (2.0, 30.0)
_POLL_SECS = 1.0
_REPORT_EVERY_SECS = 5.0
_DAY = timedelta(days=1)

Echo = Callable[[str], None]


class DruidLoadError(RuntimeError):
    """The load did not complete; the message says which step and why."""



@dataclass(frozen=True)
class LoadResult:
    """The outcome of a successful load."""

    task_id: str
    interval: str
    rows_ingested: int
    rows_rejected: int
    elapsed_secs: float


@dataclass(frozen=True)
class _Endpoints:
    overlord: str
    coordinator: str
    broker: str
    datasource: str


def load_into_druid(
    paths: Sequence[Path],
    summary: FileSummary,
    overlord_url: str,
    coordinator_url: str,
    broker_url: str,
    datasource: str,
    echo: Echo,
    timeout_secs: float = 1800.0,
) -> LoadResult:
    """Replace the UTC days `paths` cover in `datasource` with their rows; wait until queryable."""
    started = time.monotonic()
    deadline = started + timeout_secs
    where = _Endpoints(overlord_url.rstrip("/"), coordinator_url.rstrip("/"),
                       broker_url.rstrip("/"), datasource)
    _require_files(paths)
    interval = covered_days(summary.first_time, summary.last_time)
    spec = ingestion_spec(paths, datasource, interval)
    with requests.Session() as session:
        task_id = _submit(session, where, spec)
        echo(f"druid: task {task_id} replaces {interval} ({summary.rows} rows)")
        _follow_task(session, where, task_id, deadline, echo)
        ingested, rejected = _row_stats(_get_json(session, _task_url(where, task_id, "reports")))
        echo(f"druid: task SUCCESS: {ingested} rows ingested, {rejected} rejected")
        _wait_loaded(session, where, interval, deadline, echo)
        _wait_queryable(session, where, interval, ingested, deadline, echo)
    return LoadResult(task_id, interval, ingested, rejected, time.monotonic() - started)


def _require_files(paths: Sequence[Path]) -> None:
    # Druid reads a missing file as zero rows and would replace the days with nothing.
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        raise DruidLoadError(f"no such input file(s): {', '.join(missing) or '(none given)'}")


def covered_days(first: datetime, last: datetime) -> str:
    """The ISO interval of whole UTC days holding every instant from `first` to `last`."""
    start = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = last.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + _DAY
    return f"{_iso(start)}/{_iso(end)}"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ingestion_spec(paths: Sequence[Path], datasource: str, interval: str) -> dict[str, Any]:
    """The spec template with the datasource, the input files and the replaced interval."""
    spec = load_spec()
    body = spec["spec"]
    body["dataSchema"]["dataSource"] = datasource
    body["dataSchema"]["granularitySpec"]["intervals"] = [interval]
    body["ioConfig"]["inputSource"] = {
        "type": "local",
        "files": [str(p.resolve()) for p in paths],
    }
    return spec


def _task_url(where: _Endpoints, task_id: str, leaf: str) -> str:
    return f"{where.overlord}/druid/indexer/v1/task/{quote(task_id, safe='')}/{leaf}"


def _get_json(session: requests.Session, url: str, **params: str) -> Any:
    try:
        response = session.get(url, params=params, timeout=_TIMEOUT)
    except requests.RequestException as exc:
        raise DruidLoadError(f"GET {url} failed: {exc}") from exc
    if not response.ok:
        raise DruidLoadError(f"GET {url}: HTTP {response.status_code}: {response.text[:500]}")
    return response.json()


def _submit(session: requests.Session, where: _Endpoints, spec: dict[str, Any]) -> str:
    url = f"{where.overlord}/druid/indexer/v1/task"
    try:
        response = session.post(url, json=spec, timeout=_TIMEOUT)
    except requests.RequestException as exc:
        raise DruidLoadError(f"cannot submit the task to {url}: {exc}") from exc
    if not response.ok:
        raise DruidLoadError(f"overlord refused the task: HTTP {response.status_code}: "
                             f"{response.text[:1000]}")
    task_id: str = response.json()["task"]
    return task_id


def _follow_task(session: requests.Session, where: _Endpoints, task_id: str,
                 deadline: float, echo: Echo) -> None:
    started = time.monotonic()
    last_report = 0.0
    while True:
        status = _get_json(session, _task_url(where, task_id, "status"))["status"]
        state = status.get("statusCode") or status.get("status")
        if state == "SUCCESS":
            return
        if state == "FAILED":
            reason = _failure(session, where, task_id, status)
            raise DruidLoadError(f"task {task_id} FAILED: {reason}")
        now = time.monotonic()
        if now - last_report >= _REPORT_EVERY_SECS:
            detail = status.get("runnerStatusCode") or state
            echo(f"druid: task {detail} ({now - started:.0f}s)")
            last_report = now
        _sleep_or_give_up(deadline, f"task {task_id} still {state}")


def _failure(session: requests.Session, where: _Endpoints, task_id: str,
             status: dict[str, Any]) -> str:
    """The first line of the task's error, plus the first rejected row's details if any."""
    message = str(status.get("errorMsg") or "no error message").splitlines()[0]
    try:
        payload = _get_json(session, _task_url(where, task_id, "reports"))[
            "ingestionStatsAndErrors"]["payload"]
    except (DruidLoadError, KeyError, ValueError):
        return message
    events = payload.get("unparseableEvents", {}).get("buildSegments") or [{}]
    details = events[0].get("details") or []
    return "; ".join([message, *details[:1]])


def _row_stats(reports: dict[str, Any]) -> tuple[int, int]:
    """(ingested, rejected) from the task's `ingestionStatsAndErrors` report."""
    payload = reports["ingestionStatsAndErrors"]["payload"]
    build = payload["rowStats"]["buildSegments"]
    rejected = build["processedWithError"] + build["unparseable"] + build["thrownAway"]
    return int(build["processed"]), int(rejected)


def _wait_loaded(session: requests.Session, where: _Endpoints, interval: str,
                 deadline: float, echo: Echo) -> None:
    # Without `interval` the coordinator only looks at the last two weeks.
    url = f"{where.coordinator}/druid/coordinator/v1/datasources/{where.datasource}/loadstatus"
    started = time.monotonic()
    while True:
        loaded = _get_json(session, url, forceMetadataRefresh="true", interval=interval)
        percent = float(loaded.get(where.datasource, 0.0))
        if percent >= 100.0:
            echo(f"druid: segments loaded ({time.monotonic() - started:.0f}s)")
            return
        _sleep_or_give_up(deadline, f"segments of {interval} only {percent:.0f}% loaded")


def _wait_queryable(session: requests.Session, where: _Endpoints, interval: str,
                    expected: int, deadline: float, echo: Echo) -> None:
    started = time.monotonic()
    while True:
        counted = _broker_count(session, where, interval)
        if counted == expected:
            echo(f"druid: broker counts {counted} rows ({time.monotonic() - started:.0f}s)")
            return
        _sleep_or_give_up(deadline, f"broker counts {counted} rows, expected {expected}")


def _broker_count(session: requests.Session, where: _Endpoints, interval: str) -> int:
    query = {
        "queryType": "timeseries",
        "dataSource": where.datasource,
        "intervals": [interval],
        "granularity": "all",
        "aggregations": [{"type": "count", "name": "rows"}],
        "context": {"timeout": 30_000, "useCache": False, "populateCache": False},
    }
    try:
        response = session.post(f"{where.broker}/druid/v2/", json=query, timeout=_TIMEOUT)
    except requests.RequestException as exc:
        raise DruidLoadError(f"broker query failed: {exc}") from exc
    if not response.ok:
        raise DruidLoadError(f"broker query: HTTP {response.status_code}: {response.text[:500]}")
    rows = response.json()
    return int(rows[0]["result"]["rows"]) if rows else 0


def _sleep_or_give_up(deadline: float, what: str) -> None:
    if time.monotonic() >= deadline:
        raise DruidLoadError(f"gave up waiting: {what}")
    time.sleep(_POLL_SECS)
