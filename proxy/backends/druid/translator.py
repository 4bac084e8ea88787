"""Planned query → Apache Druid native query. Pure: no Flask, no HTTP, no environment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from proxy.backends.druid.filters import dimension_column, scoped_filter
from proxy.query.catalog import (
    COUNT_METRIC,
    SKETCH_LG_K,
    SKETCH_METRICS,
    SUM_METRICS,
    supported,
)
from proxy.query.ordering import SortColumn
from proxy.query.plan import ResultPlan
from schemas.model import (
    Aggregation,
    Interval,
)
from schemas.vocabulary import DIMENSIONS, GRANULARITY_SPECS, BucketUnit, DimensionKind

Json = dict[str, Any]
ROWS = "__rows"


@dataclass(frozen=True)
class DruidQuery:
    """A native query and the event keys that hold the plan's values, in plan order."""

    native: Json
    value_keys: tuple[str, ...]
    # groupBy answers rows as arrays: where each plan value sits in them (see `_array_positions`).
    value_positions: tuple[int, ...] = ()
    timestamp_position: int | None = None


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _all(plan: ResultPlan) -> str | Json:
    return "all"


def _period(plan: ResultPlan) -> Json:
    # Simple granularities ("day") bucket in UTC; a period in the query's zone buckets locally.
    query = plan.query
    period = GRANULARITY_SPECS[query.granularity].period
    return {"type": "period", "period": period, "timeZone": query.interval.time_zone.key}


def _period_from_local_midnight(plan: ResultPlan) -> Json:
    # Druid counts sub-hour periods from the epoch in UTC; anchoring them on a local midnight
    # keeps them on wall-clock marks in zones with a :30/:45 offset (Asia/Kathmandu).
    interval = plan.query.interval
    local = interval.start.astimezone(interval.time_zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return {**_period(plan), "origin": midnight.isoformat()}


# Bucket unit → the native granularity of a plan.
GRANULARITIES: dict[BucketUnit, Callable[[ResultPlan], str | Json]] = {
    BucketUnit.ALL: _all,
    BucketUnit.MINUTES: _period_from_local_midnight,
    BucketUnit.HOURS: _period,
    BucketUnit.DAYS: _period,
    BucketUnit.WEEKS: _period,
    BucketUnit.MONTHS: _period,
}


def _granularity(plan: ResultPlan) -> str | Json:
    spec = supported(GRANULARITY_SPECS, plan.query.granularity, "granularity")
    return supported(GRANULARITIES, spec.unit, "granularity unit")(plan)


class _Native(NamedTuple):
    """The aggregators and post-aggregators one public metric needs."""

    aggregators: tuple[Json, ...]
    post_aggregators: tuple[Json, ...] = ()


def _field_column(table: dict[str, str], agg: Aggregation) -> str:
    return supported(table, agg.field or "", f"{agg.type} field")


def _count(agg: Aggregation) -> _Native:
    return _Native(({"type": "longSum", "name": agg.output, "fieldName": COUNT_METRIC},))


def _hyper_unique(agg: Aggregation) -> _Native:
    sketch = {
        "type": "HLLSketchMerge",
        "name": agg.output,
        "fieldName": _field_column(SKETCH_METRICS, agg),
        "lgK": SKETCH_LG_K,
        "tgtHllType": "HLL_4",
        "round": False,
    }
    return _Native((sketch,))


def _avg(agg: Aggregation) -> _Native:
    total = f"__sum_{agg.field}"
    sums = (
        {"type": "longSum", "name": total, "fieldName": _field_column(SUM_METRICS, agg)},
        {"type": "longSum", "name": ROWS, "fieldName": COUNT_METRIC},
    )
    # `quotient`, not `/`: Druid's `/` turns x/0 into 0, and an empty bucket's average
    # must come out null (the sums are null there), never 0.
    average = {
        "type": "arithmetic",
        "name": agg.output,
        "fn": "quotient",
        "fields": [
            {"type": "fieldAccess", "fieldName": total},
            {"type": "fieldAccess", "fieldName": ROWS},
        ],
    }
    return _Native(sums, (average,))


# Aggregation type → the native (post-)aggregators behind one public metric.
AGGREGATORS: dict[str, Callable[[Aggregation], _Native]] = {
    "count": _count,
    "avg": _avg,
    "hyperUnique": _hyper_unique,
}


def _aggregators(metrics: tuple[Aggregation, ...]) -> tuple[list[Json], list[Json]]:
    # By name: two averages share the one row count.
    aggregators: dict[str, Json] = {}
    post_aggregators: list[Json] = []
    for agg in metrics:
        native = supported(AGGREGATORS, agg.type, "aggregation")(agg)
        aggregators.update((spec["name"], spec) for spec in native.aggregators)
        post_aggregators.extend(native.post_aggregators)
    return list(aggregators.values()), post_aggregators


def _is_numeric_column(name: str) -> bool:
    # Every metric is a number; only dimensions can be text.
    return name not in DIMENSIONS or DIMENSIONS[name] is DimensionKind.NUMBER


def _order_column(column: SortColumn) -> Json:
    return {
        "dimension": column.name,
        "direction": "descending" if column.descending else "ascending",
        "dimensionOrder": "numeric" if _is_numeric_column(column.name) else "lexicographic",
    }


def _limit_spec(plan: ResultPlan) -> Json:
    # The bucket start is not a limitSpec column: Druid orders by it first, or last with
    # `sortByDimsFirst` (see `translate`).
    columns = [_order_column(column) for column in plan.sort_columns if column.position != 0]
    spec: Json = {"type": "default", "limit": plan.row_limit, "columns": columns}
    if plan.query.offset:
        spec["offset"] = plan.query.offset
    return spec


# Dimension kind → the groupBy output type of its values.
OUTPUT_TYPES: dict[DimensionKind, str] = {
    DimensionKind.STRING: "STRING",
    DimensionKind.NUMBER: "LONG",
    DimensionKind.ARRAY: "STRING",
}


def _dimension_spec(name: str) -> Json:
    return {
        "type": "default",
        "dimension": dimension_column(name),
        "outputName": name,
        "outputType": OUTPUT_TYPES[supported(DIMENSIONS, name, "dimension")],
    }


# Druid runs higher `priority` first in the data servers' processing queues (default 0). A query
# that scans long intervals or explodes array dimensions goes below it, so one tenant's heavy
# reports cannot hold every processing thread while another's light ones wait behind them.
LOW_PRIORITY = -1
_LONG_INTERVAL = timedelta(days=31)


def _priority(plan: ResultPlan) -> int | None:
    query = plan.query
    explodes = any(DIMENSIONS.get(name) is DimensionKind.ARRAY for name in query.group_by)
    long = query.interval.end - query.interval.start > _LONG_INTERVAL
    return LOW_PRIORITY if explodes or long else None


def _context(plan: ResultPlan, query_id: str, timeout_ms: int, lane: str | None) -> Json:
    context: Json = {"queryId": query_id, "timeout": timeout_ms}
    if lane is not None:
        context["lane"] = lane
    if (priority := _priority(plan)) is not None:
        context["priority"] = priority
    return context


def translate(
    plan: ResultPlan,
    organization_id: str,
    datasource: str,
    query_id: str,
    timeout_ms: int,
    lane: str | None = None,
) -> DruidQuery:
    """The native `timeseries` (no group_by) or `groupBy` query for a plan, scoped to one org."""
    query = plan.query
    aggregations, post_aggregations = _aggregators(query.aggregations)
    context = _context(plan, query_id, timeout_ms, lane)
    native: Json = {
        "queryType": "groupBy" if plan.grouped else "timeseries",
        "dataSource": datasource,
        "intervals": [_interval_text(query.interval)],
        "granularity": _granularity(plan),
        "filter": scoped_filter(plan, organization_id),
        "aggregations": aggregations,
        "postAggregations": post_aggregations,
        "context": context,
    }
    keys = (*query.group_by, *query.metric_names)
    if not plan.grouped:
        # The service zero-fills every bucket itself (Druid fills interior ones only).
        context["skipEmptyBuckets"] = True
        return DruidQuery(native, keys)
    native["dimensions"] = [_dimension_spec(name) for name in query.group_by]
    native["limitSpec"] = _limit_spec(plan)
    if plan.sort_columns[0].position != 0:
        # Without it Druid sorts by time before the limitSpec columns, which would make a
        # day-by-day top-N return the first days rather than the top rows.
        context["sortByDimsFirst"] = True
    # Rows as arrays, not {"version", "timestamp", "event": {...}} objects: far fewer bytes
    # to decode for large results, and the timestamp comes as epoch milliseconds.
    context["resultAsArray"] = True
    positions, timestamp = _array_positions(native, keys)
    return DruidQuery(native, keys, positions, timestamp)


def _array_positions(native: Json, keys: tuple[str, ...]) -> tuple[tuple[int, ...], int | None]:
    """Positions of `keys` in an array row: [timestamp (not with granularity all), dimensions,
    aggregations, post-aggregations], each in query order."""
    has_timestamp = native["granularity"] != "all"
    columns = [spec["outputName"] for spec in native["dimensions"]]
    columns += [spec["name"] for spec in (*native["aggregations"], *native["postAggregations"])]
    offset = 1 if has_timestamp else 0
    return tuple(columns.index(key) + offset for key in keys), 0 if has_timestamp else None


def _interval_text(interval: Interval) -> str:
    return f"{_iso(interval.start)}/{_iso(interval.end)}"


def _renamed_post(spec: Json, suffix: str) -> Json:
    """A post-aggregator whose name and every aggregator it reads carry `suffix`."""
    renamed = {**spec}
    if "name" in spec:
        renamed["name"] = f"{spec['name']}{suffix}"
    if spec["type"] == "fieldAccess":
        renamed["fieldName"] = f"{spec['fieldName']}{suffix}"
    if "fields" in spec:
        renamed["fields"] = [_renamed_post(field, suffix) for field in spec["fields"]]
    return renamed


def _over(
    interval: Interval, index: int, aggregations: list[Json], post: list[Json]
) -> tuple[list[Json], list[Json]]:
    """One interval's aggregators, each counting only that interval's rows, named `<name>@<index>`."""
    only: Json = {"type": "interval", "dimension": "__time", "intervals": [_interval_text(interval)]}
    suffix = totals_key("", index)
    # An aggregator's `fieldName` is a stored column: only its own name changes.
    filtered = [
        {"type": "filtered", "filter": only, "aggregator": {**spec, "name": f"{spec['name']}{suffix}"}}
        for spec in aggregations
    ]
    return filtered, [_renamed_post(spec, suffix) for spec in post]


def totals_key(output: str, index: int) -> str:
    """The result key of one metric's total over the plan's `index`-th totals interval."""
    return f"{output}@{index}"


def translate_totals(
    plan: ResultPlan,
    organization_id: str,
    datasource: str,
    query_id: str,
    timeout_ms: int,
    lane: str | None = None,
) -> DruidQuery:
    """One `timeseries` over the whole of each totals interval, from the same sketches and sums as
    the rows: filtered aggregators tell the intervals apart, so one round trip answers them all."""
    aggregations, post_aggregations = _aggregators(plan.query.aggregations)
    intervals = plan.totals_intervals
    parts = [
        _over(interval, index, aggregations, post_aggregations) for index, interval in enumerate(intervals)
    ]
    native: Json = {
        "queryType": "timeseries",
        "dataSource": datasource,
        "intervals": [_interval_text(interval) for interval in sorted(intervals, key=lambda i: i.start)],
        "granularity": "all",
        "filter": scoped_filter(plan, organization_id),
        "aggregations": [spec for aggs, _ in parts for spec in aggs],
        "postAggregations": [spec for _, post in parts for spec in post],
        "context": _context(plan, query_id, timeout_ms, lane),
    }
    keys = tuple(
        totals_key(name, index) for index in range(len(intervals)) for name in plan.query.metric_names
    )
    return DruidQuery(native, keys)
