"""Planned query → Apache Druid native query. Pure: no Flask, no HTTP, no environment."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from proxy.query.catalog import (
    COUNT_METRIC,
    DIMENSION_COLUMNS,
    GRANULARITY_PERIODS,
    ORGANIZATION_COLUMN,
    SKETCH_LG_K,
    SKETCH_METRICS,
    SUM_METRICS,
)
from proxy.query.plan import ResultPlan
from schemas.model import (
    Aggregation,
    And,
    Bound,
    Filter,
    In,
    Leaf,
    Like,
    Not,
    Or,
    Regex,
    Search,
    Selector,
    scalar_text,
)
from schemas.vocabulary import DIMENSIONS, DimensionKind

Json = dict[str, Any]
ROWS = "__rows"
_FIXED_MINUTE_GRANULARITIES = frozenset({"minute", "fifteen_minute", "thirty_minute"})


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


def _granularity(plan: ResultPlan) -> str | Json:
    query = plan.query
    if query.granularity == "all":
        return "all"
    spec: Json = {
        "type": "period",
        "period": GRANULARITY_PERIODS[query.granularity],
        "timeZone": query.interval.time_zone.key,
    }
    if query.granularity in _FIXED_MINUTE_GRANULARITIES:
        # Druid counts sub-hour periods from the epoch in UTC; anchoring them on a local midnight
        # keeps them on wall-clock marks in zones with a :30/:45 offset (Asia/Kathmandu).
        local = query.interval.start.astimezone(query.interval.time_zone)
        spec["origin"] = local.replace(hour=0, minute=0, second=0, microsecond=0).isoformat()
    return spec


def _column(dimension: str) -> str:
    return DIMENSION_COLUMNS[dimension]


def _is_null(dimension: str) -> Json:
    return {"type": "null", "column": _column(dimension)}


def _not(native: Json) -> Json:
    return {"type": "not", "field": native}


def _selector(leaf: Selector) -> Json:
    return {"type": "selector", "dimension": _column(leaf.dimension), "value": scalar_text(leaf.value)}


def _in(leaf: In) -> Json:
    values = sorted({text for text in map(scalar_text, leaf.values) if text is not None})
    return {"type": "in", "dimension": _column(leaf.dimension), "values": values}


def _bound(leaf: Bound) -> Json:
    native: Json = {"type": "bound", "dimension": _column(leaf.dimension), "ordering": leaf.ordering}
    if leaf.lower is not None:
        native.update(lower=scalar_text(leaf.lower), lowerStrict=leaf.lower_strict)
    if leaf.upper is not None:
        native.update(upper=scalar_text(leaf.upper), upperStrict=leaf.upper_strict)
    return native


# An inline flag group that turns case-insensitive matching on: (?i), (?mi), (?is:...).
_CASE_INSENSITIVE = re.compile(r"\(\?[ms]*i")


def _regex(leaf: Regex) -> Json:
    # java.util.regex folds only ASCII case under (?i) unless UNICODE_CASE (?u) is on as well;
    # RE2 and Python fold Unicode, so "(?i)ZÜRICH" matched Zürich on the embedded engine only.
    pattern = f"(?u){leaf.pattern}" if _CASE_INSENSITIVE.search(leaf.pattern) else leaf.pattern
    return {"type": "regex", "dimension": _column(leaf.dimension), "pattern": pattern}


def _like(leaf: Like) -> Json:
    return {"type": "like", "dimension": _column(leaf.dimension), "pattern": leaf.pattern, "escape": "\\"}


def _search(leaf: Search) -> Json:
    query: Json = (
        {"type": "contains", "value": leaf.value, "caseSensitive": True}
        if leaf.case_sensitive
        else {"type": "insensitive_contains", "value": leaf.value}
    )
    return {"type": "search", "dimension": _column(leaf.dimension), "query": query}


# Each leaf's native filter over its non-null values; nulls are handled in `_leaf`.
_LEAVES: dict[type, Callable[[Any], Json]] = {
    Selector: _selector,
    In: _in,
    Bound: _bound,
    Regex: _regex,
    Like: _like,
    Search: _search,
}


def _matches_null(leaf: Leaf) -> bool:
    if isinstance(leaf, Selector):
        return leaf.value is None
    return isinstance(leaf, In) and None in leaf.values


def _leaf(leaf: Leaf, negated: bool) -> Json:
    # Druid 32+ filters are three-valued: a predicate on a null row is UNKNOWN, and NOT UNKNOWN
    # is still UNKNOWN, so `not(x)` alone would drop null rows. The public API is two-valued,
    # so null rows are decided explicitly with a `null` filter on both sides of a negation.
    if isinstance(leaf, Selector) and leaf.value is None:
        return _not(_is_null(leaf.dimension)) if negated else _is_null(leaf.dimension)
    if isinstance(leaf, In) and not [v for v in leaf.values if v is not None]:
        return _not(_is_null(leaf.dimension)) if negated else _is_null(leaf.dimension)
    native = _LEAVES[type(leaf)](leaf)
    if _matches_null(leaf):
        if negated:
            return {"type": "and", "fields": [_not(native), _not(_is_null(leaf.dimension))]}
        return {"type": "or", "fields": [native, _is_null(leaf.dimension)]}
    if negated:
        return {"type": "or", "fields": [_not(native), _is_null(leaf.dimension)]}
    if isinstance(leaf, Bound):
        # The legacy bound filter treats null as the smallest value when `lower` is absent.
        return {"type": "and", "fields": [native, _not(_is_null(leaf.dimension))]}
    return native


def translate_filter(node: Filter, negated: bool = False) -> Json:
    """A public filter (two-valued logic) → a native filter that matches exactly the same rows.

    Negations are pushed down to the leaves (De Morgan), where nulls are decided explicitly.
    """
    if isinstance(node, Not):
        return translate_filter(node.field, not negated)
    if isinstance(node, And | Or):
        conjunction = isinstance(node, And) != negated
        children = [translate_filter(child, negated) for child in node.fields]
        return {"type": "and" if conjunction else "or", "fields": children}
    return _leaf(node, negated)


def _scoped_filter(plan: ResultPlan, organization_id: str) -> Json:
    organization: Json = {
        "type": "equals",
        "column": ORGANIZATION_COLUMN,
        "matchValueType": "STRING",
        "matchValue": organization_id,
    }
    if plan.query.filter is None:
        return organization
    return {"type": "and", "fields": [organization, translate_filter(plan.query.filter)]}


def _aggregators(metrics: tuple[Aggregation, ...]) -> tuple[list[Json], list[Json]]:
    aggregators: dict[str, Json] = {}
    post_aggregators: list[Json] = []
    for agg in metrics:
        if agg.type == "count":
            aggregators[agg.output] = {"type": "longSum", "name": agg.output, "fieldName": COUNT_METRIC}
        elif agg.type == "hyperUnique":
            assert agg.field is not None
            aggregators[agg.output] = {
                "type": "HLLSketchMerge",
                "name": agg.output,
                "fieldName": SKETCH_METRICS[agg.field],
                "lgK": SKETCH_LG_K,
                "tgtHllType": "HLL_4",
                "round": False,
            }
        else:
            assert agg.field is not None
            total = f"__sum_{agg.field}"
            aggregators[total] = {"type": "longSum", "name": total, "fieldName": SUM_METRICS[agg.field]}
            aggregators[ROWS] = {"type": "longSum", "name": ROWS, "fieldName": COUNT_METRIC}
            # `quotient`, not `/`: Druid's `/` turns x/0 into 0, and an empty bucket's average
            # must come out null (the sums are null there), never 0.
            post_aggregators.append(
                {
                    "type": "arithmetic",
                    "name": agg.output,
                    "fn": "quotient",
                    "fields": [
                        {"type": "fieldAccess", "fieldName": total},
                        {"type": "fieldAccess", "fieldName": ROWS},
                    ],
                }
            )
    return list(aggregators.values()), post_aggregators


def _is_numeric_column(name: str) -> bool:
    # Every metric is a number; only dimensions can be text.
    return name not in DIMENSIONS or DIMENSIONS[name] is DimensionKind.NUMBER


def _order_column(plan: ResultPlan, name: str, descending: bool) -> Json:
    return {
        "dimension": name,
        "direction": "descending" if descending else "ascending",
        "dimensionOrder": "numeric" if _is_numeric_column(name) else "lexicographic",
    }


def _limit_spec(plan: ResultPlan) -> Json:
    explicit = [order.field for order in plan.query.order_by]
    columns = [_order_column(plan, o.field, o.descending) for o in plan.query.order_by]
    columns += [_order_column(plan, name, False) for name in plan.group_by if name not in explicit]
    return {"type": "default", "limit": plan.row_limit, "columns": columns}


def _dimension_spec(name: str) -> Json:
    numeric = DIMENSIONS[name] is DimensionKind.NUMBER
    return {
        "type": "default",
        "dimension": _column(name),
        "outputName": name,
        "outputType": "LONG" if numeric else "STRING",
    }


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
    context: Json = {"queryId": query_id, "timeout": timeout_ms}
    if lane is not None:
        context["lane"] = lane
    native: Json = {
        "queryType": "groupBy" if plan.grouped else "timeseries",
        "dataSource": datasource,
        "intervals": [f"{_iso(query.interval.start)}/{_iso(query.interval.end)}"],
        "granularity": _granularity(plan),
        "filter": _scoped_filter(plan, organization_id),
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
    if query.order_by:
        # Without it Druid sorts by time before the limitSpec columns, which would make a
        # day-by-day top-N return the first days rather than the top rows.
        context["sortByDimsFirst"] = True
    # Rows as arrays, not {"version", "timestamp", "event": {...}} objects: a third of the bytes
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
