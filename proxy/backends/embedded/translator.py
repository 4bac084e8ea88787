"""Planned query → one parameterised DuckDB SQL statement. Pure: no engine, no files, no Flask.

Same semantics as the Druid translator, written for SQL:

- the plan's bucket starts are the only source of buckets: rows join them with an ASOF JOIN;
- filters are two-valued: every leaf is `COALESCE(..., FALSE)` (or an `IS NULL` test), so `NOT`
  also matches the rows a leaf cannot decide; array leaves match when any element does, and an
  empty array counts as null;
- array group-bys explode, one group per element and one NULL group for an empty array, after
  the filter has picked whole rows;
- hyperUnique is an exact `COUNT(DISTINCT ...)` here (Druid estimates it).

Values always travel as parameters; identifiers come only from the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.backends.embedded.storage import TABLE, epoch_ms, quote
from proxy.errors import UnsupportedQuery
from proxy.query.catalog import DIMENSION_COLUMNS, ORGANIZATION_COLUMN, TIME_COLUMN, supported
from proxy.query.ordering import SortColumn
from proxy.query.plan import ResultPlan
from schemas.model import (
    Aggregation,
    And,
    Bound,
    Filter,
    In,
    Interval,
    Like,
    Not,
    Or,
    Regex,
    Scalar,
    Search,
    Selector,
    scalar_text,
)
from schemas.vocabulary import DIMENSIONS, GRANULARITY_SPECS, INT64_MAX, INT64_MIN, BucketUnit, DimensionKind

BUCKET = "bucket_start"

# SQL text and the values of its `?` placeholders, in order.
Fragment = tuple[str, tuple[Any, ...]]
# An element predicate: SQL over one value expression (a column, or a lambda's variable).
Predicate = Callable[[str], Fragment]


@dataclass(frozen=True)
class SqlQuery:
    """One statement and its positional parameters; rows come back as (bucket, values...)."""

    sql: str
    parameters: tuple[Any, ...]

    def explain(self) -> dict[str, Any]:
        """JSON-ready form of the statement."""
        return {"sql": self.sql, "parameters": list(self.parameters)}


def _column(dimension: str) -> str:
    return quote(supported(DIMENSION_COLUMNS, dimension, "dimension"))


def _kind(dimension: str) -> DimensionKind:
    return supported(DIMENSIONS, dimension, "dimension")


def _int64(value: str) -> int | None:
    try:
        whole = int(value)
    except ValueError:
        return None
    # Past 64 bits DuckDB cannot bind a Python int ("1" + 300 zeros): compare as a double.
    return whole if INT64_MIN <= whole <= INT64_MAX else None


def _number(value: Scalar) -> int | float:
    # The schemas only let numbers (or numeric strings) through for numeric comparisons.
    if isinstance(value, int):
        return value
    whole = _int64(value) if isinstance(value, str) else None
    if whole is not None:
        return whole
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UnsupportedQuery(f"A numeric comparison needs a number, not {value!r}.") from None
    if number.is_integer() and INT64_MIN <= number <= INT64_MAX:
        return int(number)
    return number


def _value(dimension: str, value: Scalar) -> Any:
    return _number(value) if _kind(dimension) is DimensionKind.NUMBER else scalar_text(value)


def _join(parts: Sequence[Fragment], separator: str) -> Fragment:
    return separator.join(sql for sql, _ in parts), tuple(p for _, params in parts for p in params)


# ---------------------------------------------------------------------------------------------
# Filters


def _is_null(dimension: str) -> Fragment:
    if _kind(dimension) is DimensionKind.ARRAY:
        return f"len({_column(dimension)}) = 0", ()
    return f"{_column(dimension)} IS NULL", ()


def _matching(dimension: str, predicate: Predicate) -> Fragment:
    """Rows where the value (any element, for arrays) satisfies `predicate`; never NULL."""
    if _kind(dimension) is DimensionKind.ARRAY:
        sql, params = predicate("v")
        return f"COALESCE(len(list_filter({_column(dimension)}, lambda v: {sql})) > 0, FALSE)", params
    sql, params = predicate(_column(dimension))
    return f"COALESCE({sql}, FALSE)", params


def _or_null(dimension: str, fragment: Fragment) -> Fragment:
    null_sql, _ = _is_null(dimension)
    return f"({null_sql} OR {fragment[0]})", fragment[1]


def _selector(leaf: Selector) -> Fragment:
    if leaf.value is None:
        return _is_null(leaf.dimension)
    value = _value(leaf.dimension, leaf.value)
    return _matching(leaf.dimension, lambda x: (f"{x} = ?", (value,)))


def _in(leaf: In) -> Fragment:
    present = [v for v in leaf.values if v is not None]
    if not present:
        return _is_null(leaf.dimension)
    values = tuple(sorted({_value(leaf.dimension, v) for v in present}))
    marks = ", ".join("?" for _ in values)
    matched = _matching(leaf.dimension, lambda x: (f"{x} IN ({marks})", values))
    return _or_null(leaf.dimension, matched) if None in leaf.values else matched


def _bound_predicate(leaf: Bound) -> Predicate:
    numeric = leaf.ordering == "numeric"
    convert: Callable[[Scalar], Any] = _number if numeric else scalar_text
    cast = not numeric and _kind(leaf.dimension) is DimensionKind.NUMBER
    sides = [
        (leaf.lower, ">" if leaf.lower_strict else ">="),
        (leaf.upper, "<" if leaf.upper_strict else "<="),
    ]
    present = [(convert(bound), op) for bound, op in sides if bound is not None]

    def predicate(x: str) -> Fragment:
        # Lexicographic order on a numeric column compares the numbers' text, as Druid does.
        subject = f"CAST({x} AS VARCHAR)" if cast else x
        return " AND ".join(f"{subject} {op} ?" for _, op in present), tuple(v for v, _ in present)

    return predicate


def _bound(leaf: Bound) -> Fragment:
    # A NULL value fails both comparisons, and COALESCE turns that into FALSE: bounds never
    # match nulls, even without a lower bound.
    return _matching(leaf.dimension, _bound_predicate(leaf))


def _regex(leaf: Regex) -> Fragment:
    # regexp_matches is a partial match (RE2), like Druid's regex filter.
    return _matching(leaf.dimension, lambda x: (f"regexp_matches({x}, ?)", (leaf.pattern,)))


def _like(leaf: Like) -> Fragment:
    return _matching(leaf.dimension, lambda x: (f"{x} LIKE ? ESCAPE '\\'", (leaf.pattern,)))


def _search(leaf: Search) -> Fragment:
    if leaf.case_sensitive:
        return _matching(leaf.dimension, lambda x: (f"contains({x}, ?)", (leaf.value,)))
    return _matching(leaf.dimension, lambda x: (f"contains(lower({x}), lower(?))", (leaf.value,)))


def _negation(node: Not) -> Fragment:
    sql, params = translate_filter(node.field)
    # And/Or come back parenthesised already.
    return (f"NOT {sql}" if isinstance(node.field, And | Or) else f"NOT ({sql})"), params


def _junction(node: And | Or) -> Fragment:
    operator = "AND" if isinstance(node, And) else "OR"
    sql, params = _join([translate_filter(child) for child in node.fields], f" {operator} ")
    return f"({sql})", params


# Filter node type → its boolean SQL, never NULL.
FILTERS: dict[type, Callable[[Any], Fragment]] = {
    And: _junction,
    Or: _junction,
    Not: _negation,
    Selector: _selector,
    In: _in,
    Bound: _bound,
    Regex: _regex,
    Like: _like,
    Search: _search,
}


def translate_filter(node: Filter) -> Fragment:
    """A public filter → a boolean SQL expression that is never NULL, so `NOT` is two-valued."""
    return supported(FILTERS, type(node), "filter")(node)


# ---------------------------------------------------------------------------------------------
# Statement


def _needed_columns(plan: ResultPlan) -> list[str]:
    names = [*plan.group_by, *(agg.field for agg in plan.metrics if agg.field is not None)]
    unique = dict.fromkeys(supported(DIMENSION_COLUMNS, name, "dimension") for name in names)
    return [quote(TIME_COLUMN), *(quote(column) for column in unique)]


def _within(interval: Interval) -> Fragment:
    time = quote(TIME_COLUMN)
    return f"{time} >= ? AND {time} < ?", (epoch_ms(interval.start), epoch_ms(interval.end))


def _any_of(intervals: Sequence[Interval]) -> Fragment:
    if len(intervals) == 1:
        return _within(intervals[0])
    sql, params = _join([_within(interval) for interval in intervals], ") OR (")
    return f"(({sql}))", params


def _matched(plan: ResultPlan, organization_id: str, intervals: Sequence[Interval] = ()) -> Fragment:
    """The organization's rows in the plan's interval (or any of `intervals`) that the filters match."""
    where: list[Fragment] = [
        (f"{quote(ORGANIZATION_COLUMN)} = ?", (organization_id,)),
        _any_of(intervals or (plan.query.interval,)),
    ]
    if plan.query.filter is not None:
        where.append(translate_filter(plan.query.filter))
    condition, params = _join(where, "\n    AND ")
    columns = ", ".join(_needed_columns(plan))
    return f"matched AS (\n  SELECT {columns}\n  FROM {TABLE}\n  WHERE {condition}\n)", params


# Aggregation type → its SQL over the (quoted) field column, each aggregate followed by `only`
# (empty, or a FILTER clause); count takes no field.
METRICS: dict[str, Callable[[str, str], str]] = {
    "count": lambda field, only: f"COUNT(*){only}",
    # Rows here are the (exploded) rows of the group, as Druid's summed `count` metric.
    "avg": lambda field, only: f"SUM({field}){only}::DOUBLE / COUNT(*){only}",
    # Exact on this engine; Druid's hyperUnique is an estimate.
    "hyperUnique": lambda field, only: f"COUNT(DISTINCT {field}){only}::DOUBLE",
}


def _metric(agg: Aggregation, only: str = "", output: str | None = None) -> str:
    build = supported(METRICS, agg.type, "aggregation")
    field = "" if agg.field is None else _column(agg.field)
    return f"{build(field, only)} AS {quote(output or agg.output)}"


def _explodes(plan: ResultPlan) -> list[str]:
    """One CTE per array group-by, each exploding one array column of the stage before it."""
    stages: list[str] = []
    for name in plan.group_by:
        if _kind(name) is DimensionKind.ARRAY:
            column, source = _column(name), _stage(len(stages))
            # An empty array groups as one NULL value, like Druid's empty multi-value rows.
            # Each UNNEST sits in its own SELECT: two in one SELECT would zip, not cross.
            stages.append(
                f"{_stage(len(stages) + 1)} AS (\n"
                f"  SELECT * REPLACE (unnest(CASE WHEN len({column}) = 0 THEN [NULL::VARCHAR] "
                f"ELSE {column} END) AS {column})\n  FROM {source}\n)"
            )
    return stages


def _stage(explodes: int) -> str:
    return "bucketed" if explodes == 0 else f"exploded_{explodes}"


def _sql_order(column: SortColumn) -> str:
    direction = "DESC" if column.descending else "ASC"
    if not column.nullable:
        return f"{column.position + 1} {direction}"
    # The result order: nulls first ascending, last descending.
    return f"{column.position + 1} {direction} {'NULLS LAST' if column.descending else 'NULLS FIRST'}"


def _order_by(plan: ResultPlan) -> str:
    """The plan's result order (`proxy.query.ordering`), so that LIMIT keeps the same rows."""
    return ", ".join(_sql_order(column) for column in plan.sort_columns)


def _output(expression: str, name: str) -> str:
    return expression if expression == quote(name) else f"{expression} AS {quote(name)}"


def _one_bucket(plan: ResultPlan) -> list[Fragment]:
    # One bucket: no join needed to find it.
    sql = f"bucketed AS (\n  SELECT ?::BIGINT AS {BUCKET}, matched.*\n  FROM matched\n)"
    return [(sql, (plan.bucket_starts_ms[0],))]


def _plan_buckets(plan: ResultPlan) -> list[Fragment]:
    # The latest bucket start at or before the row's time; the interval bounds the last bucket.
    return [
        (f"buckets AS (\n  SELECT unnest(?::BIGINT[]) AS {BUCKET}\n)", (list(plan.bucket_starts_ms),)),
        (
            f"bucketed AS (\n  SELECT buckets.{BUCKET}, matched.*\n  FROM matched\n"
            f"  ASOF JOIN buckets ON matched.{quote(TIME_COLUMN)} >= buckets.{BUCKET}\n)",
            (),
        ),
    ]


# Bucket unit → the CTEs that stamp each matched row with the start of its plan bucket.
BUCKETING: dict[BucketUnit, Callable[[ResultPlan], list[Fragment]]] = {
    BucketUnit.ALL: _one_bucket,
    BucketUnit.MINUTES: _plan_buckets,
    BucketUnit.HOURS: _plan_buckets,
    BucketUnit.DAYS: _plan_buckets,
    BucketUnit.WEEKS: _plan_buckets,
    BucketUnit.MONTHS: _plan_buckets,
}


def _bucketed(plan: ResultPlan) -> list[Fragment]:
    spec = supported(GRANULARITY_SPECS, plan.query.granularity, "granularity")
    return supported(BUCKETING, spec.unit, "granularity unit")(plan)


def translate(plan: ResultPlan, organization_id: str) -> SqlQuery:
    """The SQL statement for a plan, scoped to one organization."""
    explodes = _explodes(plan)
    ctes, params = _join(
        [_matched(plan, organization_id), *_bucketed(plan), *((e, ()) for e in explodes)], ",\n"
    )
    groups = [_output(_column(name), name) for name in plan.group_by]
    metrics = [_metric(agg) for agg in plan.metrics]
    lines = [
        f"WITH {ctes}",
        f"SELECT {', '.join([BUCKET, *groups, *metrics])}",
        f"FROM {_stage(len(explodes))}",
        f"GROUP BY {', '.join(str(index + 1) for index in range(len(groups) + 1))}",
        f"ORDER BY {_order_by(plan)}",
    ]
    if plan.grouped:
        lines.append("LIMIT ?")
        params = (*params, plan.row_limit)
    if plan.query.offset:
        lines.append("OFFSET ?")
        params = (*params, plan.query.offset)
    return SqlQuery("\n".join(lines), params)


def totals_column(output: str, index: int) -> str:
    """The column of one metric's total over the plan's `index`-th totals interval."""
    return f"{output}@{index}"


def translate_totals(plan: ResultPlan, organization_id: str) -> SqlQuery:
    """One row: every metric over all the sessions of each totals interval, unexploded; a
    FILTER per interval tells them apart, so one statement answers them all."""
    intervals = plan.totals_intervals
    matched, params = _matched(plan, organization_id, intervals)
    within = [_within(interval) for interval in intervals]
    flags = ", ".join(f"({sql}) AS in_{index}" for index, (sql, _) in enumerate(within))
    metrics = [
        _metric(agg, f" FILTER (WHERE in_{index})", totals_column(agg.output, index))
        for index in range(len(intervals))
        for agg in plan.metrics
    ]
    lines = [
        f"WITH {matched},",
        f"flagged AS (\n  SELECT *, {flags}\n  FROM matched\n)",
        f"SELECT {', '.join(metrics)}",
        "FROM flagged",
    ]
    flag_params = tuple(value for _, values in within for value in values)
    return SqlQuery("\n".join(lines), (*params, *flag_params))
