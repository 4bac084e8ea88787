"""The result plan every backend shares: columns, buckets, zero-fill, ordering, row cap."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import islice
from operator import itemgetter
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from proxy.errors import BadRequest, ResultTooLarge
from proxy.query.buckets import format_timestamp, iter_buckets
from schemas.model import Aggregation, Interval, Query

# A backend row: the bucket start in epoch milliseconds, then the group values and the metric
# values in plan order. Druid's array rows and DuckDB's tuples have this shape as they come.
BackendRow = Sequence[Any]
# A response row: the printed bucket start, the group values, the metric values.
OutputRow = list[Any]


@dataclass(frozen=True)
class ResultPlan:
    """Everything needed to turn backend rows into the public response, fixed at plan time."""

    query: Query
    bucket_starts_ms: tuple[int, ...]
    max_rows: int

    @property
    def zone(self) -> ZoneInfo:
        return self.query.interval.time_zone

    @property
    def group_by(self) -> tuple[str, ...]:
        return self.query.group_by

    @property
    def metrics(self) -> tuple[Aggregation, ...]:
        return self.query.aggregations

    @property
    def grouped(self) -> bool:
        return bool(self.query.group_by)

    @property
    def row_limit(self) -> int:
        """Rows to ask the backend for: the caller's limit, or one past the cap to detect overflow."""
        return self.query.limit if self.query.limit is not None else self.max_rows + 1

    def fields(self) -> list[dict[str, str]]:
        """The response's column descriptions, in order."""
        dims = [{"name": name, "type": "dimension"} for name in ("timestamp", *self.group_by)]
        return dims + [{"name": agg.output, "type": "metric"} for agg in self.metrics]


def _epoch_ms(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)


@lru_cache(maxsize=64)
def _bucket_starts_ms(interval: Interval, granularity: str, limit: int) -> tuple[int, ...]:
    # A pure function of its (hashable) arguments, and dashboards ask for the same intervals
    # over and over: stepping through zone-aware buckets costs ~3 µs a bucket. At most 64
    # entries of at most `limit` starts, so the memory stays bounded.
    return tuple(_epoch_ms(start) for start in islice(iter_buckets(interval, granularity), limit))


def plan_result(query: Query, max_buckets: int, max_rows: int) -> ResultPlan:
    """Fix the buckets of a query; too many buckets is the caller's error."""
    starts = _bucket_starts_ms(query.interval, query.granularity, max_buckets + 1)
    if len(starts) > max_buckets:
        raise BadRequest(
            f"The interval holds more than {max_buckets} {query.granularity} buckets; "
            "use a coarser granularity or a shorter interval.",
            {"granularity": [f"At most {max_buckets} buckets."]},
        )
    return ResultPlan(query, starts, max_rows)


class _MetricOutput(NamedTuple):
    """How a metric's backend values become response values."""

    kept: type | None  # values of exactly this type are already response values
    convert: Callable[[Any], Any]


_METRIC_OUTPUTS: dict[str, _MetricOutput] = {
    "count": _MetricOutput(int, lambda value: 0 if value is None else int(value)),
    "hyperUnique": _MetricOutput(float, lambda value: 0.0 if value is None else float(value)),
    # Every value converts: a float may be NaN or infinite, which the response shows as null.
    "avg": _MetricOutput(
        None, lambda value: None if value is None or not math.isfinite(value) else float(value)
    ),
}


def _convert_metrics(plan: ResultPlan, rows: list[OutputRow]) -> None:
    """Each metric column through its type's conversion, in place; skipped when already converted."""
    for index, agg in enumerate(plan.metrics, start=1 + len(plan.group_by)):
        kept, convert = _METRIC_OUTPUTS[agg.type]
        # One pass in C over the types is a third of a conversion pass in Python.
        if kept is not None and set(map(type, map(itemgetter(index), rows))) <= {kept}:
            continue
        for row in rows:
            row[index] = convert(row[index])


def _zero_filled(plan: ResultPlan, rows: Iterable[BackendRow]) -> list[OutputRow]:
    by_bucket = {row[0]: row[1:] for row in rows}
    if plan.query.granularity == "all" and by_bucket:
        # Druid stamps the single bucket with its own idea of the start; there is only one.
        by_bucket = {plan.bucket_starts_ms[0]: next(iter(by_bucket.values()))}
    empty = (None,) * len(plan.metrics)
    return [[bucket, *by_bucket.get(bucket, empty)] for bucket in plan.bucket_starts_ms]


class _SortColumn(NamedTuple):
    position: int  # in a row: 0 the bucket start, then the group values and the metric values
    descending: bool


def _sort_columns(plan: ResultPlan) -> tuple[_SortColumn, ...]:
    """The order, most significant column first: order_by, the other groups, and the timestamp."""
    columns = [*plan.group_by, *(agg.output for agg in plan.metrics)]
    explicit = [order.field for order in plan.query.order_by]
    groups = [_SortColumn(columns.index(name) + 1, False) for name in plan.group_by if name not in explicit]
    timestamp = _SortColumn(0, False)
    if not explicit:
        return (timestamp, *groups)
    ordered = [_SortColumn(columns.index(order.field) + 1, order.descending) for order in plan.query.order_by]
    return (*ordered, *groups, timestamp)


def _in_order(rows: list[OutputRow], columns: tuple[_SortColumn, ...]) -> bool:
    """Whether each row sorts at or after the one before it (nulls first ascending, last descending)."""
    for previous, row in zip(rows, islice(rows, 1, None)):
        for index, descending in columns:
            before, after = (row[index], previous[index]) if descending else (previous[index], row[index])
            if before != after:
                if before is None or (after is not None and before < after):
                    break
                return False
    return True


def _in_time_then_group_order(rows: list[OutputRow]) -> bool:
    """`_in_order` for the default order over one group, in a third of its time (large results)."""
    previous_bucket, previous_value = rows[0][0], rows[0][1]
    for row in islice(rows, 1, None):
        bucket, value = row[0], row[1]
        if bucket != previous_bucket:
            if bucket < previous_bucket:
                return False
        elif previous_value is not None and (value is None or value < previous_value):
            return False
        previous_bucket, previous_value = bucket, value
    return True


def _is_ordered(plan: ResultPlan, rows: list[OutputRow]) -> bool:
    if not rows:
        return True
    if not plan.query.order_by and len(plan.group_by) == 1:
        return _in_time_then_group_order(rows)
    return _in_order(rows, _sort_columns(plan))


def _nulls_first_key(index: int) -> Callable[[OutputRow], tuple[bool, Any]]:
    return lambda row: ((value := row[index]) is not None, value)


def _sort(plan: ResultPlan, rows: list[OutputRow]) -> None:
    # Stable sorts from the least significant column up; with (is-not-null, value) keys nulls come
    # first ascending and last descending.
    for index, descending in reversed(_sort_columns(plan)):
        rows.sort(key=_nulls_first_key(index), reverse=descending)


def _grouped(plan: ResultPlan, rows: Sequence[BackendRow]) -> list[OutputRow]:
    if len(rows) > plan.max_rows:
        raise ResultTooLarge(
            f"The result has more than {plan.max_rows} rows; add a `limit` or narrow the query.",
            {"limit": [f"At most {plan.max_rows} rows per response."]},
        )
    data = list(map(list, rows))
    _convert_metrics(plan, data)
    # Both backends sort as the service does (Druid's limitSpec, the SQL ORDER BY): one linear
    # check instead of a sort, which is only a fallback for a collation that differs.
    if not _is_ordered(plan, data):
        _sort(plan, data)
    if plan.query.limit is not None:
        del data[plan.query.limit :]
    return data


def render(plan: ResultPlan, rows: Sequence[BackendRow]) -> dict[str, Any]:
    """Backend rows → `{"fields", "data"}`: zero-filled or grouped, ordered, capped."""
    if plan.grouped:
        data = _grouped(plan, rows)
    else:
        data = _zero_filled(plan, rows)
        _convert_metrics(plan, data)
    _print_timestamps(plan, data)
    return {"fields": plan.fields(), "data": data}


# Printed bucket starts by (epoch ms, zone name), shared by every request: dashboards print the
# same days again and again, and printing one costs ~3 µs. Emptied when it grows past the cap.
_PRINTED: dict[tuple[int, str], str] = {}
_PRINTED_CAP = 100_000


def _printed(bucket: int, zone: ZoneInfo) -> str:
    key = (bucket, zone.key)
    text = _PRINTED.get(key)
    if text is None:
        if len(_PRINTED) >= _PRINTED_CAP:
            _PRINTED.clear()
        text = _PRINTED[key] = format_timestamp(datetime.fromtimestamp(bucket / 1000, UTC), zone)
    return text


class _PrintedStarts(dict[int, str]):
    """The bucket starts of one render, each printed or found in the shared cache once."""

    def __init__(self, zone: ZoneInfo) -> None:
        super().__init__()
        self.zone = zone

    def __missing__(self, bucket: int) -> str:
        text = self[bucket] = _printed(bucket, self.zone)
        return text


def _print_timestamps(plan: ResultPlan, rows: list[OutputRow]) -> None:
    """Each row's bucket start → its printed form, in place (the rows are the render's own)."""
    if plan.query.granularity == "all":
        start = _printed(plan.bucket_starts_ms[0], plan.zone)
        for row in rows:
            row[0] = start
        return
    printed = _PrintedStarts(plan.zone)
    for row in rows:
        row[0] = printed[row[0]]
