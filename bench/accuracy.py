"""Goal 7: relative error of Druid's unique counts against exact counts, and their storage.

Buckets (UTC day, week, month and all-time; per organization and over all of them) are
counted three ways on the broker: the built-in `hyperUnique` over the `*_hll` columns, and
DataSketches `HLLSketchMerge` over the `*_sketch` columns at lgK 14 (what the public
`hyperUnique` reads) and at lgK 12. The exact counts come from DuckDB's `count(DISTINCT)`
over the embedded engine's copy of the same file. Storage: segment totals from the
coordinator API, column sizes from the historical's segment cache (`meta.smoosh`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import requests
from pydruid.utils.aggregators import hyperunique
from pydruid.utils.filters import Dimension

from bench.broker import Broker, rows
from bench.datasets import BROKER, OVERLORD, Dataset
from bench.stats import summary
from proxyctl.ingest.generator import organization_ids

COLUMNS = ("session_id", "visitor_id")
ESTIMATORS: dict[str, Callable[[str], dict[str, Any]]] = {
    "hyperUnique (*_hll)": lambda column: {**hyperunique(f"{column}_hll"), "round": False},
    "HLL sketch lgK 14 (*_sketch)": lambda column: {
        "type": "HLLSketchMerge",
        "fieldName": f"{column}_sketch",
        "lgK": 14,
        "tgtHllType": "HLL_4",
        "round": False,
    },
    "HLL sketch lgK 12 (*_sketch)": lambda column: {
        "type": "HLLSketchMerge",
        "fieldName": f"{column}_sketch",
        "lgK": 12,
        "tgtHllType": "HLL_4",
        "round": False,
    },
}
# (granularity, interval): 10 days, 8 ISO weeks, 11 months, and the whole generated span.
BLOCKS = (
    ("day", "2019-03-01T00:00:00Z/2019-03-11T00:00:00Z"),
    ("week", "2019-04-01T00:00:00Z/2019-05-27T00:00:00Z"),
    ("month", "2019-01-01T00:00:00Z/2019-12-01T00:00:00Z"),
    ("all", "2018-12-31T00:00:00Z/2019-12-01T00:00:00Z"),
)
MIN_CARDINALITY = 100


def _epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _druid(
    datasource: str, organization: str | None, granularity: str, interval: str
) -> dict[int, dict[str, float]]:
    aggregations = {
        f"{name}|{column}": make(column) for name, make in ESTIMATORS.items() for column in COLUMNS
    }
    answer = Broker(BROKER, timeout_secs=130).timeseries(
        datasource=datasource,
        intervals=[interval],
        granularity=granularity,
        aggregations=aggregations,
        filter=Dimension("organization_id") == organization if organization else None,
        context={"timeout": 120_000, "skipEmptyBuckets": True},
    )
    start = _epoch_ms(interval.split("/")[0])
    return {
        (start if granularity == "all" else _epoch_ms(row["timestamp"])): row["result"]
        for row in rows(answer)
    }


def _exact(
    connection: duckdb.DuckDBPyConnection, organization: str | None, granularity: str, interval: str
) -> dict[int, dict[str, int]]:
    start, end = (_epoch_ms(part) for part in interval.split("/"))
    bucket = (
        "?"
        if granularity == "all"
        else (f"epoch_ms(date_trunc('{granularity}', make_timestamp(\"__time\" * 1000)))")
    )
    params: list[Any] = [start] if granularity == "all" else []
    sql = (
        f"SELECT {bucket} AS bucket, count(DISTINCT session_id), count(DISTINCT visitor_id) "
        'FROM sessions WHERE "__time" >= ? AND "__time" < ?'
        + (" AND organization_id = ?" if organization else "")
        + " GROUP BY bucket"
    )
    params += [start, end] + ([organization] if organization else [])
    return {
        int(b): {"session_id": s, "visitor_id": v} for b, s, v in connection.execute(sql, params).fetchall()
    }


def errors(dataset: Dataset) -> dict[str, Any]:
    """Relative errors per estimator over every (query, bucket) pair with ≥ 100 distinct values."""
    directory = dataset.embedded_data_dir / "embedded"
    generation = directory / (directory / "CURRENT").read_text().strip()
    found: dict[str, list[float]] = defaultdict(list)
    cardinalities: list[int] = []
    with duckdb.connect(str(generation), read_only=True) as connection:
        for organization in (None, *organization_ids(5, dataset.seed)):
            for granularity, interval in BLOCKS:
                estimates = _druid(dataset.datasource, organization, granularity, interval)
                for bucket, exact in _exact(connection, organization, granularity, interval).items():
                    for column in COLUMNS:
                        if exact[column] < MIN_CARDINALITY:
                            continue
                        cardinalities.append(exact[column])
                        for name in ESTIMATORS:
                            estimate = estimates[bucket][f"{name}|{column}"]
                            found[name].append(abs(estimate - exact[column]) / exact[column])
    return {
        "pairs": len(cardinalities),
        "cardinality_min": min(cardinalities),
        "cardinality_max": max(cardinalities),
        "estimators": {name: summary(values) for name, values in found.items()},
    }


def _segment_cache() -> Path:
    state = os.environ.get("PROXY_DRUID_LOCAL_DIR")
    base = Path(state) if state else Path.home() / ".cache" / "reporting-proxy" / "druid-local"
    return base / "var" / "segment-cache"


def storage(dataset: Dataset) -> dict[str, Any]:
    """Segment bytes of the datasource (coordinator) and the bytes of each HLL column."""
    url = f"{OVERLORD}/druid/coordinator/v1/datasources/{dataset.datasource}"
    segments = requests.get(url, timeout=(2, 30)).json()["segments"]
    columns: dict[str, int] = defaultdict(int)
    for meta in (_segment_cache() / dataset.datasource).glob("*/*/*/meta.smoosh"):
        for line in meta.read_text().splitlines()[1:]:
            name, _, begin, end = line.split(",")
            columns[name] += int(end) - int(begin)
    total_columns = sum(columns.values())
    wanted = [f"{c}_{kind}" for kind in ("hll", "sketch") for c in COLUMNS] + list(COLUMNS)
    return {
        "segments": segments["count"],
        "segment_bytes": segments["size"],
        "column_bytes": {name: columns[name] for name in wanted if name in columns},
        "column_share": {
            name: columns[name] / total_columns for name in wanted if total_columns and name in columns
        },
        "bytes_per_session": {name: columns[name] / dataset.sessions for name in wanted if name in columns},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
