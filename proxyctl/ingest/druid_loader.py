"""Load validated session files into Druid, replacing the UTC days they cover.

A load replaces its days a UTC month at a time: one `index_parallel` task per month, built from
`druid_specs/visitor_sessions.json`, followed to SUCCESS, then a wait until the coordinator
reports the new segments loaded, the broker serves them and counts exactly the month's rows. Errors:

    DruidLoadError          a task was refused, failed, or the data never became queryable

A task spills its rows to disk every few thousand rows (the sketch columns look large to
Druid's memory estimate), a piece of every day segment that got rows each time, and merges each
segment's pieces when it publishes. The longer the span of one task, the more pieces each
segment has to merge, so a task covers one month (docs/druid-behaviour.md, (j)). The spec keeps
the pieces uncompressed, or merging them can run the local Indexer out of direct memory. Longer
loads first split their rows by month into a temporary directory (the Indexer reads the files
by path). A month without rows is replaced with the month before it, so every
covered day is still replaced, never kept. A failed month leaves the months before it
replaced: loading the same files again replaces the same days.
"""

from __future__ import annotations

import bisect
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from druid_specs import load_spec
from proxyctl.ingest.ndjson import FileSummary, line_timestamp_ms

_TIMEOUT = (2.0, 30.0)
_POLL_SECS = 1.0
_REPORT_EVERY_SECS = 5.0
_DAY = timedelta(days=1)

Echo = Callable[[str], None]


class DruidLoadError(RuntimeError):
    """The load did not complete; the message says which step and why."""


@dataclass(frozen=True)
class LoadResult:
    """The outcome of a successful load: every task, the days replaced, the rows."""

    task_ids: tuple[str, ...]
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


@dataclass(frozen=True)
class Part:
    """The days one task replaces, and the files holding their rows."""

    interval: str
    files: tuple[Path, ...]
    rows: int


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
    """Replace the UTC days `paths` cover in `datasource` with their rows, a month per task;
    wait until each month is queryable. `timeout_secs` bounds each month."""
    started = time.monotonic()
    where = _Endpoints(
        overlord_url.rstrip("/"), coordinator_url.rstrip("/"), broker_url.rstrip("/"), datasource
    )
    _require_files(paths)
    interval = covered_days(summary.first_time, summary.last_time)
    outcomes = []
    with requests.Session() as session, _parts(paths, summary.rows, interval) as parts:
        for number, part in enumerate(parts, start=1):
            if len(parts) > 1:
                echo(f"druid: month {number} of {len(parts)}: {part.interval} ({part.rows} rows)")
            try:
                outcomes.append(_replace(session, where, part, time.monotonic() + timeout_secs, echo))
            except DruidLoadError as exc:
                if number == 1:
                    raise
                raise DruidLoadError(
                    f"{exc} (months 1-{number - 1} of {len(parts)} are replaced; "
                    "loading the same files again replaces every day)"
                ) from exc
    task_ids, ingested, rejected = zip(*outcomes)
    return LoadResult(task_ids, interval, sum(ingested), sum(rejected), time.monotonic() - started)


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


def month_intervals(interval: str) -> list[str]:
    """`interval` (whole UTC days) cut at the start of every UTC month inside it."""
    start, end = (_parse_iso(bound) for bound in interval.split("/"))
    months = []
    while start < end:
        stop = min((start.replace(day=1) + timedelta(days=32)).replace(day=1), end)
        months.append(f"{_iso(start)}/{_iso(stop)}")
        start = stop
    return months


def split_by_month(paths: Sequence[Path], interval: str, directory: Path) -> list[Part]:
    """The rows of `paths` written to one file per month of `interval` in `directory`; a month
    without rows joins the month before it (the first month always has rows)."""
    months = month_intervals(interval)
    # Each month's start, then the end of the last: a row at or past that end fits no month.
    bounds = [_epoch_ms(month.split("/")[0]) for month in months] + [_epoch_ms(interval.split("/")[1])]
    files = [directory / f"{month[:7]}.ndjson" for month in months]
    counts = [0] * len(months)
    with ExitStack() as stack:
        sinks = [stack.enter_context(path.open("wb")) for path in files]
        for raw in _lines(paths):
            month = bisect.bisect_right(bounds, line_timestamp_ms(raw)) - 1
            if not 0 <= month < len(months):
                raise DruidLoadError(f"a session outside {interval}: {raw[:80]!r}")
            sinks[month].write(raw)
            counts[month] += 1
    return _fold_empty_months(months, files, counts)


def _lines(paths: Sequence[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as lines:
            for raw in lines:
                # A file's last line may lack its newline; in a month's file it must not.
                yield raw if raw.endswith(b"\n") else raw + b"\n"


def _fold_empty_months(months: list[str], files: list[Path], counts: list[int]) -> list[Part]:
    parts: list[Part] = []
    for month, path, rows in zip(months, files, counts):
        if rows or not parts:
            parts.append(Part(month, (path,), rows))
        else:
            previous = parts.pop()
            start = previous.interval.split("/")[0]
            parts.append(Part(f"{start}/{month.split('/')[1]}", previous.files, previous.rows))
    return parts


@contextmanager
def _parts(paths: Sequence[Path], rows: int, interval: str) -> Iterator[list[Part]]:
    """The load as parts: the files as they are within one month, else split by month."""
    if len(month_intervals(interval)) == 1:
        yield [Part(interval, tuple(paths), rows)]
        return
    with tempfile.TemporaryDirectory(prefix="druid-load-") as directory:
        try:
            parts = split_by_month(paths, interval, Path(directory))
        except ValueError as exc:
            raise DruidLoadError(f"cannot split the input by month: {exc}") from exc
        yield parts


def _replace(
    session: requests.Session, where: _Endpoints, part: Part, deadline: float, echo: Echo
) -> tuple[str, int, int]:
    """One task replacing `part.interval`, followed until the broker counts its rows."""
    task_id = _submit(session, where, ingestion_spec(part.files, where.datasource, part.interval))
    echo(f"druid: task {task_id} replaces {part.interval} ({part.rows} rows)")
    _follow_task(session, where, task_id, deadline, echo)
    ingested, rejected = _row_stats(_get_json(session, _task_url(where, task_id, "reports")))
    echo(f"druid: task SUCCESS: {ingested} rows ingested, {rejected} rejected")
    _wait_loaded(session, where, part.interval, deadline, echo)
    _wait_served(session, where, part.interval, deadline, echo)
    _wait_queryable(session, where, part.interval, ingested, deadline, echo)
    return task_id, ingested, rejected


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _epoch_ms(stamp: str) -> int:
    return int(_parse_iso(stamp).timestamp() * 1000)


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
        raise DruidLoadError(
            f"overlord refused the task: HTTP {response.status_code}: {response.text[:1000]}"
        )
    task_id: str = response.json()["task"]
    return task_id


def _follow_task(
    session: requests.Session, where: _Endpoints, task_id: str, deadline: float, echo: Echo
) -> None:
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


def _failure(session: requests.Session, where: _Endpoints, task_id: str, status: dict[str, Any]) -> str:
    """The first line of the task's error, plus the first rejected row's details if any."""
    message = str(status.get("errorMsg") or "no error message").splitlines()[0]
    try:
        payload = _get_json(session, _task_url(where, task_id, "reports"))["ingestionStatsAndErrors"][
            "payload"
        ]
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


def _wait_loaded(
    session: requests.Session, where: _Endpoints, interval: str, deadline: float, echo: Echo
) -> None:
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


def _wait_served(
    session: requests.Session, where: _Endpoints, interval: str, deadline: float, echo: Echo
) -> None:
    """Until the broker serves every segment the task published for `interval`.

    A row count cannot tell a replacement from the segments it replaces when both hold as many
    rows, and the coordinator counts the new segments loaded while the broker may still read the
    old ones. So: the wanted segments are the used ones nothing overshadows that lie within
    `interval` (the new ones); the wait ends once the broker's candidates for `interval` hold
    them all. The broker's timeline gives a query only the top version of each time chunk, so
    once it serves every wanted segment it serves no older version inside their chunks.

    Not equality: the broker clips each candidate's interval to the one asked, lists realtime
    segments the metadata does not, and an older coarser segment (a month after compaction)
    partly replaced by the new days is not overshadowed, yet served only outside them. Days
    replaced by no rows (tombstones) have no wanted segment; the row count that follows catches
    a broker still serving old rows there.
    """
    started = time.monotonic()
    while True:
        wanted = _wanted_segments(session, where, interval)
        served = wanted & _served_segments(session, where, interval)
        if served == wanted:
            echo(f"druid: broker serves the {len(wanted)} new segments ({time.monotonic() - started:.0f}s)")
            return
        _sleep_or_give_up(
            deadline, f"broker serves {len(served)} of {len(wanted)} new segments of {interval}"
        )


Segment = tuple[str, str, int]


def _wanted_segments(session: requests.Session, where: _Endpoints, interval: str) -> set[Segment]:
    """(interval, version, partition) of the used segments within `interval` nothing
    overshadows: the ones the task published; tombstones (days replaced by no rows) are never
    served."""
    url = f"{where.coordinator}/druid/coordinator/v1/metadata/segments"
    listed = _get_json(session, url, datasources=where.datasource, includeOvershadowedStatus="true")
    return {
        (segment["interval"], segment["version"], _partition(segment["shardSpec"]))
        for segment in listed
        if not segment["overshadowed"]
        and segment["shardSpec"]["type"] != "tombstone"
        and _within(segment["interval"], interval)
    }


def _partition(shard_spec: dict[str, Any]) -> int:
    # `numbered_overwrite` (segment locking) numbers its partitions `partitionId`.
    return int(shard_spec.get("partitionNum", shard_spec.get("partitionId", 0)))


def _served_segments(session: requests.Session, where: _Endpoints, interval: str) -> set[Segment]:
    """(interval, version, partition) of the segments the broker's timeline gives a query of
    `interval`, each interval clipped to `interval`."""
    url = f"{where.broker}/druid/v2/datasources/{quote(where.datasource, safe='')}/candidates"
    listed = _get_json(session, url, intervals=interval)
    return {(segment["interval"], segment["version"], int(segment["partitionNumber"])) for segment in listed}


def _within(inner: str, outer: str) -> bool:
    """Whether ISO interval `inner` lies inside `outer`; one Python cannot parse (Druid's
    ETERNITY, years past 9999) does not."""
    try:
        (inner_start, inner_end), (outer_start, outer_end) = (
            [_parse_iso(bound) for bound in both.split("/")] for both in (inner, outer)
        )
    except ValueError:
        return False
    return outer_start <= inner_start and inner_end <= outer_end


def _wait_queryable(
    session: requests.Session, where: _Endpoints, interval: str, expected: int, deadline: float, echo: Echo
) -> None:
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
