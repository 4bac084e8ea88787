"""Load validated session files into the embedded engine, replacing the UTC days they cover.

A load holds the directory's load lock and writes a new generation: the rows of the previous
generation outside the covered days, plus every row of the files (read by DuckDB's own NDJSON
reader), sorted by organization and time so that queries skip most row groups. Only after a
checkpoint does CURRENT move to it, so readers never see a partial load. Loading the same
file twice leaves the same data, as with Druid's `dropExisting` replace. The directory is made
0700 and every file the load writes is created 0600 (every tenant's sessions are in them).
Errors:

    EmbeddedLoadError       the files did not load; CURRENT still names the previous generation
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from proxy.backends.embedded.storage import (
    TABLE,
    Generations,
    create_table_sql,
    epoch_ms,
    private_files,
    quote,
    table_columns,
)
from proxy.query.catalog import DIMENSION_COLUMNS, ORGANIZATION_COLUMN, TIME_COLUMN
from proxy.settings import Settings
from proxyctl.ingest.ndjson import ARRAY_FIELDS, INTEGER_FIELDS, STRING_FIELDS, FileSummary

Echo = Callable[[str], None]
_DAY = timedelta(days=1)
_MAX_LINE_BYTES = 64 * 1024 * 1024

# The input keys of the NDJSON contract and how DuckDB's reader should type them.
INPUT_TYPES: dict[str, str] = {
    "timestamp": "VARCHAR",
    "organization_id": "VARCHAR",
    "session_id": "VARCHAR",
    "visitor_id": "VARCHAR",
    **{name: "VARCHAR" for name in STRING_FIELDS},
    **{name: "VARCHAR[]" for name in ARRAY_FIELDS},
    **{name: "BIGINT" for name in INTEGER_FIELDS},
}

# Epoch milliseconds of the validated timestamp text `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`,
# computed from its parts: digits past the millisecond are dropped (floored, as the validator
# does) and the offset is whole minutes. No TIMESTAMPTZ, so no time zone database is involved.
TIMESTAMP_MS = """(
      epoch_ms(CAST(substr("timestamp", 1, 19) AS TIMESTAMP))
      + CAST(rpad(substr(regexp_extract("timestamp", '^.{19}\\.([0-9]+)', 1), 1, 3), 3, '0') AS BIGINT)
      - CASE WHEN "timestamp"[-1:] = 'Z' THEN 0
             ELSE (CASE WHEN "timestamp"[-6:-6] = '-' THEN -1 ELSE 1 END)
                  * (CAST("timestamp"[-5:-4] AS BIGINT) * 60 + CAST("timestamp"[-2:] AS BIGINT)) * 60000
        END)"""


class EmbeddedLoadError(RuntimeError):
    """The load did not complete; the previous generation is still the current one."""


@dataclass(frozen=True)
class LoadResult:
    """The outcome of a successful load."""

    generation: str
    rows_ingested: int
    rows_rejected: int
    rows_total: int
    elapsed_secs: float


def covered_days(first: datetime, last: datetime) -> tuple[int, int]:
    """Epoch-ms `[start, end)` of the whole UTC days holding every instant from `first` to `last`."""
    start = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = last.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + _DAY
    return epoch_ms(start), epoch_ms(end)


def _source_expression(column: str) -> str:
    """The select expression for table column `column`, from the NDJSON reader's columns."""
    if column == TIME_COLUMN:
        return f"{TIMESTAMP_MS} AS {quote(TIME_COLUMN)}"
    if column == ORGANIZATION_COLUMN:
        return quote(ORGANIZATION_COLUMN)
    source = next(name for name, stored in DIMENSION_COLUMNS.items() if stored == column)
    if source in ARRAY_FIELDS:
        # A missing array key is an empty array, never NULL.
        return f"COALESCE({quote(source)}, []) AS {quote(column)}"
    return f"{quote(source)} AS {quote(column)}"


def _insert_sql(with_previous: bool) -> str:
    columns = [name for name, _ in table_columns()]
    listed = ", ".join(quote(name) for name in columns)
    new_rows = (
        f"SELECT {', '.join(_source_expression(name) for name in columns)}\n"
        "  FROM read_ndjson(?, columns = ?, maximum_object_size = ?)"
    )
    time = quote(TIME_COLUMN)
    kept = f"SELECT {listed} FROM previous.{TABLE} WHERE NOT ({time} >= ? AND {time} < ?)\n  UNION ALL\n  "
    body = (kept if with_previous else "") + new_rows
    return f"INSERT INTO {TABLE} ({listed})\nSELECT * FROM (\n  {body}\n) ORDER BY {quote(ORGANIZATION_COLUMN)}, {time}"


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _write_generation(
    target: Path, previous: Path | None, paths: Sequence[Path], days: tuple[int, int]
) -> tuple[int, int]:
    """Write the new generation file; (rows in the covered days, rows in all)."""
    files = [str(path.resolve()) for path in paths]
    params: list[Any] = [*(days if previous else ()), files, INPUT_TYPES, _MAX_LINE_BYTES]
    time_column = quote(TIME_COLUMN)
    with closing(duckdb.connect(str(target))) as connection:
        connection.execute(create_table_sql())
        if previous is not None:
            connection.execute(f"ATTACH {_sql_string(str(previous))} AS previous (READ_ONLY)")
        connection.execute(_insert_sql(previous is not None), params)
        if previous is not None:
            connection.execute("DETACH previous")
        covered = connection.execute(
            f"SELECT count(*) FROM {TABLE} WHERE {time_column} >= ? AND {time_column} < ?", list(days)
        ).fetchone()
        total = connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        connection.execute("CHECKPOINT")
    assert covered is not None and total is not None
    return int(covered[0]), int(total[0])


def _day(epoch_milliseconds: int) -> str:
    return datetime.fromtimestamp(epoch_milliseconds / 1000, UTC).date().isoformat()


def load_into_embedded(
    paths: Sequence[Path], summary: FileSummary, settings: Settings, echo: Echo
) -> LoadResult:
    """Replace the covered UTC days of the embedded data with the rows of `paths`."""
    started = time.monotonic()
    generations = Generations(settings.embedded_dir)
    days = covered_days(summary.first_time, summary.last_time)
    with generations.load_lock():
        previous = generations.current()
        name = generations.next_name()
        echo(
            f"embedded: writing {name}: {summary.rows} sessions replace the UTC days "
            f"{_day(days[0])} to {_day(days[1] - 1)}"
            + (f", other days kept from {previous}" if previous else "")
        )
        try:
            previous_path = generations.path(previous) if previous else None
            with private_files():
                ingested, total = _write_generation(generations.path(name), previous_path, paths, days)
        except duckdb.Error as exc:
            generations.prune(set(generations.existing()) - {name})
            raise EmbeddedLoadError(f"loading into {name} failed: {exc}") from exc
        if ingested != summary.rows:
            generations.prune(set(generations.existing()) - {name})
            raise EmbeddedLoadError(
                f"{ingested} rows read but {summary.rows} validated: did a file change during the load?"
            )
        generations.publish(name)
        deleted = generations.prune({name, previous} if previous else {name})
    elapsed = time.monotonic() - started
    echo(
        f"embedded: CURRENT is {name} ({total} rows in all, {ingested / max(elapsed, 1e-9):,.0f} sessions/s)"
    )
    if deleted:
        echo(f"embedded: deleted old generations {', '.join(deleted)}")
    return LoadResult(name, ingested, 0, total, elapsed)
