"""The result plan every backend shares: columns, buckets, zero-fill, ordering, row cap."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from proxy.buckets import format_timestamp, iter_buckets
from proxy.errors import BadRequest, ResultTooLarge
from proxy.gc_pause import gc_paused
from schemas.model import Aggregation, Interval, Query

# A backend row: (bucket start in epoch milliseconds, group values + metric values in plan order).
BackendRow = tuple[int, Sequence[Any]]
# A row on its way out: bucket start and its normalized values.
Prepared = tuple[int, list[Any]]


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


_METRIC_DEFAULTS: dict[str, Callable[[Any], Any]] = {
    "count": lambda value: 0 if value is None else int(value),
    "hyperUnique": lambda value: 0.0 if value is None else float(value),
    "avg": lambda value: None if value is None or not math.isfinite(value) else float(value),
}


def _normalizer(plan: ResultPlan) -> Callable[[Sequence[Any]], list[Any]]:
    """Group values as they are, each metric through its type's default; looked up once per plan."""
    width = len(plan.group_by)
    converters = tuple(enumerate([_METRIC_DEFAULTS[agg.type] for agg in plan.metrics], start=width))

    def normalize(values: Sequence[Any]) -> list[Any]:
        row = list(values)
        for index, convert in converters:
            row[index] = convert(row[index])
        return row

    return normalize


def _zero_filled(plan: ResultPlan, rows: Iterable[BackendRow]) -> list[Prepared]:
    by_bucket = {bucket: values for bucket, values in rows}
    if plan.query.granularity == "all" and by_bucket:
        # Druid stamps the single bucket with its own idea of the start; there is only one.
        by_bucket = {plan.bucket_starts_ms[0]: next(iter(by_bucket.values()))}
    empty = [None] * len(plan.metrics)
    normalize = _normalizer(plan)
    return [(bucket, normalize(by_bucket.get(bucket, empty))) for bucket in plan.bucket_starts_ms]


def _value_key(position: int) -> Callable[[Prepared], tuple[bool, Any]]:
    return lambda row: (row[1][position] is not None, row[1][position])


def _timestamp_key(row: Prepared) -> int:
    return row[0]


def _sort_keys(plan: ResultPlan) -> list[tuple[Callable[[Prepared], Any], bool]]:
    """Sort keys, most significant first: order_by, the other groups, and the timestamp."""
    columns = [*plan.group_by, *(agg.output for agg in plan.metrics)]
    explicit = [order.field for order in plan.query.order_by]
    groups = [(_value_key(columns.index(name)), False) for name in plan.group_by if name not in explicit]
    if not explicit:
        return [(_timestamp_key, False), *groups]
    ordered = [(_value_key(columns.index(o.field)), o.descending) for o in plan.query.order_by]
    return [*ordered, *groups, (_timestamp_key, False)]


def _time_then_groups_key(width: int) -> Callable[[Prepared], tuple[Any, ...]]:
    """The default order (timestamp, then each group ascending, nulls first) as one tuple key."""
    if width == 1:
        return lambda row: (row[0], (value := row[1][0]) is not None, value)

    def key(row: Prepared) -> tuple[Any, ...]:
        parts: list[Any] = [row[0]]
        for value in row[1][:width]:
            parts += (value is not None, value)
        return tuple(parts)

    return key


def _ordered(plan: ResultPlan, rows: list[Prepared]) -> list[Prepared]:
    if not plan.query.order_by:
        # All ascending: one pass with a tuple key instead of one pass per key (large results).
        rows.sort(key=_time_then_groups_key(len(plan.group_by)))
        return rows
    # Stable sorts from the least significant key up; with (is-not-null, value) keys nulls come
    # first ascending and last descending.
    for key, descending in reversed(_sort_keys(plan)):
        rows.sort(key=key, reverse=descending)
    return rows


def render(plan: ResultPlan, rows: Iterable[BackendRow]) -> dict[str, Any]:
    """Backend rows → `{"fields", "data"}`: zero-filled or grouped, ordered, capped."""
    with gc_paused(len(rows) if isinstance(rows, Sized) else 0):
        return _render(plan, rows)


def _render(plan: ResultPlan, rows: Iterable[BackendRow]) -> dict[str, Any]:
    if plan.grouped:
        normalize = _normalizer(plan)
        prepared = [(bucket, normalize(values)) for bucket, values in rows]
        if len(prepared) > plan.max_rows:
            raise ResultTooLarge(
                f"The result has more than {plan.max_rows} rows; add a `limit` or narrow the query.",
                {"limit": [f"At most {plan.max_rows} rows per response."]},
            )
        prepared = _ordered(plan, prepared)
        if plan.query.limit is not None:
            prepared = prepared[: plan.query.limit]
    else:
        prepared = _zero_filled(plan, rows)
    return {"fields": plan.fields(), "data": _with_timestamps(plan, prepared)}


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


def _with_timestamps(plan: ResultPlan, rows: list[Prepared]) -> list[list[Any]]:
    zone = plan.zone
    # The prepared value lists are this render's own: the timestamp goes in front of each in place.
    if plan.query.granularity == "all":
        start = _printed(plan.bucket_starts_ms[0], zone)
        for _, values in rows:
            values.insert(0, start)
        return [values for _, values in rows]
    formatted: dict[int, str] = {}
    for bucket, values in rows:
        text = formatted.get(bucket)
        if text is None:
            text = formatted[bucket] = _printed(bucket, zone)
        values.insert(0, text)
    return [values for _, values in rows]
