"""Bench data: generated with `reporting-proxy gen`, loaded with `reporting-proxy load`, reused.

Each (size, seed) has its own NDJSON file, its own Druid datasource and its own embedded data
directory. A load is skipped when the target already counts exactly `size` sessions and the
time of the load that filled it is kept in `var/bench/loads.json`, so the ingestion figures
survive reuse; a fresh checkout (no record) loads again to measure, and `BENCH_REINGEST=1`
measures again anyway.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from pydruid.utils.aggregators import longsum

from bench.broker import Broker, DruidQueryError, rows
from proxyctl.ingest.ndjson import line_timestamp_ms

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("BENCH_DIR", ROOT / "var" / "bench"))
BIN = Path(sys.executable).parent
BROKER = os.environ.get("BENCH_DRUID_BROKER_URL", "http://127.0.0.1:8082")
OVERLORD = os.environ.get("BENCH_DRUID_OVERLORD_URL", "http://127.0.0.1:8081")
ORGS = 5
LOADS = WORK / "loads.json"
# Up to this many sessions a data set goes into Druid in one `load` (which runs a task per UTC
# month); the 10M set goes in one ISO week per `load` (see `week_files`).
DRUID_SINGLE_LOAD = 2_000_000
# Rate limits high enough never to refuse the bench's load, low enough to stay on: the
# limiter's per-request cost is part of what is measured. Concurrency limits off: the bench is
# one organization using every serving slot, which the start-up check refuses for any limit.
ADMISSION = {
    "PROXY_RATE_LIMIT_PER_ORG_PER_MIN": "100000000",
    "PROXY_RATE_LIMIT_PER_PRINCIPAL_PER_MIN": "100000000",
    "PROXY_MAX_CONCURRENT_PER_ORG": "0",
    "PROXY_MAX_CONCURRENT_PER_PRINCIPAL": "0",
}


@dataclass(frozen=True)
class Dataset:
    """One generated data set: `sessions` sessions of `ORGS` organizations from `seed`."""

    sessions: int
    seed: int

    @property
    def tag(self) -> str:
        return f"{self.sessions}_s{self.seed}"

    @property
    def path(self) -> Path:
        return WORK / f"sessions-{self.tag}.ndjson"

    @property
    def datasource(self) -> str:
        return f"bench_sessions_{self.tag}"

    @property
    def embedded_data_dir(self) -> Path:
        return WORK / f"embedded-{self.tag}"


def cli_env(backend: str, dataset: Dataset | None = None, data_dir: Path | None = None) -> dict[str, str]:
    """The environment `reporting-proxy` and the service run with for a backend and data set."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROXY_")}
    env.update(PROXY_BACKEND=backend, PROXY_REQUEST_TIMEOUT_SECS="120", **ADMISSION)
    if data_dir is not None:
        env["PROXY_DATA_DIR"] = str(data_dir)
    elif dataset is not None and backend == "embedded":
        env["PROXY_DATA_DIR"] = str(dataset.embedded_data_dir)
    if backend == "druid":
        env.update(PROXY_DRUID_BROKER_URL=BROKER, PROXY_DRUID_OVERLORD_URL=OVERLORD)
        if dataset is not None:
            env["PROXY_DRUID_DATASOURCE"] = dataset.datasource
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 7200) -> str:
    """Run `reporting-proxy ARGS`; its stdout, or an error with both streams."""
    done = subprocess.run(
        [str(BIN / "reporting-proxy"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"reporting-proxy {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def ensure_file(dataset: Dataset, log: Any = print) -> Path:
    """Generate the NDJSON file unless it is there (generation is deterministic)."""
    if not dataset.path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        partial = dataset.path.with_suffix(".partial")
        log(f"generating {dataset.sessions:,} sessions (seed {dataset.seed}) into {dataset.path}")
        cli(
            {**os.environ},
            "gen",
            str(partial),
            "--sessions",
            str(dataset.sessions),
            "--orgs",
            str(ORGS),
            "--seed",
            str(dataset.seed),
        )
        partial.rename(dataset.path)
    return dataset.path


def druid_count(datasource: str) -> int:
    """Sessions the broker counts in a datasource over all time (0 when it does not exist)."""
    try:
        answer = Broker(BROKER, timeout_secs=70).timeseries(
            datasource=datasource,
            granularity="all",
            intervals=["1000-01-01/3000-01-01"],
            aggregations={"n": longsum("count")},
            context={"timeout": 60_000},
        )
    except DruidQueryError:
        return 0
    found = rows(answer)
    return int(found[0]["result"]["n"] or 0) if found else 0


def embedded_count(dataset: Dataset) -> int:
    """Sessions in the current embedded generation of a data set (0 before its first load)."""
    directory = dataset.embedded_data_dir / "embedded"
    current = directory / "CURRENT"
    if not current.exists():
        return 0
    path = directory / current.read_text().strip()
    with duckdb.connect(str(path), read_only=True) as connection:
        row = connection.execute("SELECT count(*) FROM sessions").fetchone()
    return int(row[0]) if row else 0


def week_files(dataset: Dataset) -> list[Path]:
    """The data set split by the ISO week (UTC) of the session start, one file per week, made once.

    The loader runs a Druid task per UTC month; a month of the largest set in one task is
    untried on the local Indexer, so that set keeps going in a week at a time.
    """
    directory = WORK / f"weeks-{dataset.tag}"
    done = directory / "DONE"
    if not done.exists():
        directory.mkdir(parents=True, exist_ok=True)
        sinks: dict[str, Any] = {}
        with dataset.path.open("rb") as source:
            for line in source:
                week = utc_week(line)
                sink = sinks.get(week)
                if sink is None:
                    sink = sinks[week] = (directory / f"{week}.ndjson").open("wb")
                sink.write(line)
        for sink in sinks.values():
            sink.close()
        done.write_text("\n".join(sorted(sinks)))
    return [directory / f"{week}.ndjson" for week in done.read_text().split()]


def utc_week(line: bytes) -> str:
    """The ISO week (UTC) of a session line's start, as `2019-W26`."""
    stamp = datetime.fromtimestamp(line_timestamp_ms(line) / 1000, UTC)
    year, week, _ = stamp.isocalendar()
    return f"{year}-W{week:02d}"


def _records() -> dict[str, Any]:
    return json.loads(LOADS.read_text()) if LOADS.exists() else {}


def load_record(backend: str, dataset: Dataset) -> dict[str, Any] | None:
    """The timing of the load that filled this backend with this data set, if recorded."""
    record: dict[str, Any] | None = _records().get(f"{backend}:{dataset.tag}")
    return record


def _phases(output: str) -> dict[str, float]:
    """Seconds of the validation and total from `reporting-proxy load`'s last line."""
    match = re.search(r"in ([0-9.]+) s\s*$", output.strip())
    return {"total_secs_reported": float(match.group(1))} if match else {}


def ensure_loaded(backend: str, dataset: Dataset, log: Any = print) -> dict[str, Any] | None:
    """Load a data set into a backend unless it is already there; the load's timing record."""
    count = druid_count(dataset.datasource) if backend == "druid" else embedded_count(dataset)
    reingest = os.environ.get("BENCH_REINGEST") == "1"
    record = load_record(backend, dataset)
    # Data loaded by another checkout has no timing here: loading it again measures it.
    if count == dataset.sessions and record is not None and not reingest:
        return record
    ensure_file(dataset, log)
    log(
        f"loading {dataset.sessions:,} sessions into {backend} "
        f"({dataset.datasource if backend == 'druid' else dataset.embedded_data_dir})"
    )
    env = cli_env(backend, dataset)
    files = (
        week_files(dataset) if backend == "druid" and dataset.sessions > DRUID_SINGLE_LOAD else [dataset.path]
    )
    started = time.perf_counter()
    output = "\n".join(cli(env, "load", str(path)) for path in files)
    elapsed = time.perf_counter() - started
    record = {
        "sessions": dataset.sessions,
        "seed": dataset.seed,
        "secs": round(elapsed, 2),
        "sessions_per_sec": round(dataset.sessions / elapsed),
        "bytes": dataset.path.stat().st_size,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "loads": len(files),
        **_phases(output),
        "output": output.strip().splitlines()[-6:],
    }
    records = _records()
    records[f"{backend}:{dataset.tag}"] = record
    LOADS.write_text(json.dumps(records, indent=2))
    log(f"loaded in {elapsed:.1f} s ({record['sessions_per_sec']:,} sessions/s)")
    return record
