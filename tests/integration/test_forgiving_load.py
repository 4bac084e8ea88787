"""`reporting-proxy load --max-bad-rows N` on both engines, with the real CLI: generated sessions
with a few hundred lines corrupted on purpose. With N large enough exactly the good rows are
queryable and the rejects file lists exactly the bad ones; with N too small nothing changes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
import requests

from proxy.backends.embedded.storage import TABLE, Generations
from proxy.query.catalog import DIMENSION_COLUMNS
from proxy.settings import Settings
from proxyctl.ingest.generator import generate
from tests.support.served import BIN, BROKER, OVERLORD, clean_env, cli, require_druid

pytestmark = pytest.mark.integration

DATASOURCE = "it_forgiving_load"
START, DAYS = date(2022, 6, 1), 12  # one UTC month: one Druid task
INTERVAL = "2022-06-01T00:00:00Z/2022-06-13T00:00:00Z"
SESSIONS = 3000
EVERY = 10  # lines 10, 20, ... are corrupted: 300 bad rows


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda row: orjson.dumps({**row, key: value})


def _drop(key: str) -> Callable[[dict[str, Any]], bytes]:
    return lambda row: orjson.dumps({name: value for name, value in row.items() if name != key})


# How a line is corrupted, and the reason the rejects file must give (a prefix where the rest
# quotes the parser).
CORRUPTIONS: list[tuple[Callable[[dict[str, Any]], bytes], str]] = [
    (lambda row: orjson.dumps(row)[:-40], "not valid JSON ("),
    (_drop("visitor_id"), "visitor_id is required"),
    (_set("session_duration_secs", "60"), "session_duration_secs must be a non-negative integer below 2^53"),
    (
        _set("distinct_visited_urls_count", -1),
        "distinct_visited_urls_count must be a non-negative integer below 2^53",
    ),
    (_set("timestamp", "2022-06-31T10:00:00Z"), "timestamp '2022-06-31T10:00:00Z' is not a valid date-time"),
    (_set("timestamp", "0999-06-01T10:00:00Z"), "timestamp '0999-06-01T10:00:00Z' is outside 1000-01-01"),
    (_set("referrer", "https://x/"), "unknown key 'referrer'"),
    (_set("device_type", "phone"), "device_type must be desktop, tablet, mobile or null"),
    (_set("city", ""), "city must be a non-empty string or null"),
    (lambda row: b"", "empty line"),
]


@dataclass(frozen=True)
class Corrupted:
    """A generated file with every EVERY-th line corrupted, and what its good rows add up to."""

    path: Path
    bad: dict[int, tuple[bytes, str]]  # line number → (the line written, the expected reason)
    good_count: int
    good_duration_sum: int


def _corrupted(path: Path, seed: int) -> Corrupted:
    generate(path, sessions=SESSIONS, orgs=3, seed=seed, start=START, days=DAYS)
    rows = [orjson.loads(raw) for raw in path.read_bytes().splitlines()]
    bad: dict[int, tuple[bytes, str]] = {}
    lines = []
    for number, row in enumerate(rows, start=1):
        if number % EVERY:
            lines.append(orjson.dumps(row))
            continue
        corrupt, reason = CORRUPTIONS[(number // EVERY) % len(CORRUPTIONS)]
        bad[number] = (corrupt(row), reason)
        lines.append(bad[number][0])
    path.write_bytes(b"\n".join(lines) + b"\n")
    good = [row for number, row in enumerate(rows, start=1) if number not in bad]
    return Corrupted(path, bad, len(good), sum(row["session_duration_secs"] for row in good))


def _load(env: dict[str, str], path: Path, limit: int) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "reporting-proxy"), "load", str(path), "--max-bad-rows", str(limit)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def _druid_figures(env: dict[str, str]) -> tuple[int, int, tuple[str, ...]]:
    query = {
        "queryType": "timeseries",
        "dataSource": DATASOURCE,
        "intervals": [INTERVAL],
        "granularity": "all",
        "aggregations": [
            {"type": "count", "name": "n"},
            {"type": "longSum", "name": "duration", "fieldName": "session_duration_secs_sum"},
        ],
        "context": {"useCache": False, "populateCache": False},
    }
    response = requests.post(f"{BROKER}/druid/v2/", json=query, timeout=30)
    assert response.status_code == 200, response.text
    (result,) = [row["result"] for row in response.json()]
    url = f"{OVERLORD}/druid/coordinator/v1/metadata/datasources/{DATASOURCE}/segments"
    segments = requests.get(url, timeout=30).json()
    return int(result["n"]), int(result["duration"]), tuple(sorted(segments))


def _embedded_figures(env: dict[str, str]) -> tuple[int, int, tuple[str, ...]]:
    generations = Generations(Settings(backend="embedded", data_dir=Path(env["PROXY_DATA_DIR"])).embedded_dir)
    current = generations.current()
    assert current is not None
    duration = DIMENSION_COLUMNS["session_duration_secs"]
    with duckdb.connect(str(generations.path(current)), read_only=True) as connection:
        row = connection.execute(f'SELECT count(*), sum("{duration}") FROM {TABLE}').fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), (current,)


FIGURES = {"druid": _druid_figures, "embedded": _embedded_figures}


@dataclass(frozen=True)
class Run:
    """The engine's environment, and what the loads of the module did."""

    backend: str
    env: dict[str, str]
    loaded: Corrupted
    loaded_output: str
    figures: tuple[int, int, tuple[str, ...]]


@pytest.fixture(scope="module", params=["embedded", "druid"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    backend: str = request.param
    directory = tmp_path_factory.mktemp(f"forgiving-{backend}")
    druid = {"druid_broker_url": BROKER, "druid_overlord_url": OVERLORD, "druid_datasource": DATASOURCE}
    env = clean_env(
        backend=backend, data_dir=str(directory / "data"), **(druid if backend == "druid" else {})
    )
    if backend == "druid":
        require_druid()
    corrupted = _corrupted(directory / "sessions.ndjson", seed=15)
    output = cli(env, "load", str(corrupted.path), "--max-bad-rows", str(len(corrupted.bad)))
    yield Run(backend, env, corrupted, output, FIGURES[backend](env))


def test_the_file_holds_a_few_hundred_bad_rows_of_every_kind(run: Run) -> None:
    reasons = {reason for _, reason in run.loaded.bad.values()}
    assert (len(run.loaded.bad), len(reasons)) == (SESSIONS // EVERY, len(CORRUPTIONS))


def test_exactly_the_good_rows_are_queryable(run: Run) -> None:
    count, duration, _ = run.figures
    assert (count, duration) == (run.loaded.good_count, run.loaded.good_duration_sum)
    assert count == SESSIONS - SESSIONS // EVERY


def test_the_rejects_file_holds_exactly_the_bad_rows_with_their_reasons(run: Run) -> None:
    rejects = run.loaded.path.with_name("sessions.ndjson.rejects.ndjson")
    entries = [orjson.loads(raw) for raw in rejects.read_bytes().splitlines()]
    assert [entry["line"] for entry in entries] == sorted(run.loaded.bad)
    mismatched = [
        entry
        for entry in entries
        if not entry["reason"].startswith(run.loaded.bad[entry["line"]][1])
        or entry["raw"].encode() != run.loaded.bad[entry["line"]][0]
        or entry["file"] != str(run.loaded.path)
    ]
    assert mismatched == []


def test_the_summary_prints_the_counts_and_where_the_rejects_are(run: Run) -> None:
    rejects = run.loaded.path.with_name("sessions.ndjson.rejects.ndjson")
    last = run.loaded_output.splitlines()[-1]
    assert last.startswith(f"{run.loaded.good_count} rows ingested, 300 rejected (rejects in {rejects}) in ")


def test_with_too_small_a_limit_nothing_changes(run: Run, tmp_path: Path) -> None:
    # Another file over the same days: loaded, it would change the figures.
    other = _corrupted(tmp_path / "other.ndjson", seed=16)
    assert (other.good_count, other.good_duration_sum) != run.figures[:2]
    done = _load(run.env, other.path, len(other.bad) - 1)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(
        f"Error: 300 bad rows, more than --max-bad-rows 299 allows; each is in {other.path}.rejects.ndjson; "
        "nothing was loaded"
    )
    assert FIGURES[run.backend](run.env) == run.figures
    rejects = tmp_path / "other.ndjson.rejects.ndjson"
    assert [orjson.loads(raw)["line"] for raw in rejects.read_bytes().splitlines()] == sorted(other.bad)
