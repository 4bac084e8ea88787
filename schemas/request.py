"""The visitor_sessions request body: strict marshmallow schemas that load a typed `Query`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from schemas.filters import FilterField, StrictBoolean, load_filter
from schemas.model import Aggregation, And, Filter, Interval, OrderBy, Query
from schemas.periods import COMPARISONS
from schemas.vocabulary import (
    AGGREGATIONS,
    COMPARE_PERIODS,
    DIMENSIONS,
    GRANULARITIES,
    ORDER_DIRECTIONS,
    aggregation_output,
)


def _loads(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


# The IANA names a query may use: the ones that load, published as the schema's enum.
ZONES = frozenset(name for name in available_timezones() if _loads(name))
MAX_AGGREGATIONS = 20
# Instants a query may name. Python's datetime ends at years 1 and 9999, and bucket starts are
# computed in the zone (a year bucket reaches 12 months on), so stay well inside its range.
EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class QueryLimits:
    """Caps that keep one query from costing the backend (or the service) too much."""

    max_interval_days: int = 366
    max_group_by: int = 5
    max_filter_depth: int = 10
    max_filter_nodes: int = 100
    max_filter_values: int = 1_000
    max_result_rows: int = 100_000


class JsonInteger(fields.Integer):
    """A JSON Schema integer: a number with no fractional part (5 or 5.0), never a boolean or text."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid", input=value)
        return int(value)


class _StrictSchema(Schema):
    class Meta:
        unknown = RAISE


def _load_zone(name: str) -> ZoneInfo:
    # The known names first: ZoneInfo() alone would also open arbitrary relative paths.
    if name not in ZONES:
        raise ValidationError("Unknown time zone; use an IANA name such as Europe/Helsinki.")
    return ZoneInfo(name)


def _check_ends(start: datetime, end: datetime) -> None:
    """The rules both ends of any interval obey, each error under `start` or `end`."""
    for side, instant in (("start", start), ("end", end)):
        if not EARLIEST <= instant <= LATEST:
            raise ValidationError("Must lie between 1000-01-01 and 9000-01-01 (UTC).", side)
    if end <= start:
        raise ValidationError("Must be after start.", "end")


class IntervalSchema(_StrictSchema):
    start = fields.AwareDateTime(required=True, format="iso")
    end = fields.AwareDateTime(required=True, format="iso")
    time_zone = fields.String(load_default="UTC")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Interval:
        try:
            zone = _load_zone(data["time_zone"])
        except ValidationError as exc:
            raise ValidationError(exc.messages, "time_zone") from exc
        _check_ends(data["start"], data["end"])
        return Interval(data["start"], data["end"], zone)


class CompareIntervalSchema(_StrictSchema):
    """`compare` as explicit ends; the zone is the query interval's."""

    start = fields.AwareDateTime(required=True, format="iso")
    end = fields.AwareDateTime(required=True, format="iso")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> tuple[datetime, datetime]:
        _check_ends(data["start"], data["end"])
        return data["start"], data["end"]


# A named period, or the ends of an interval (resolved against the query's interval on load).
CompareSpec = str | tuple[datetime, datetime]
# Built once, not per request, like the filter list below.
_COMPARE_INTERVAL = CompareIntervalSchema()


class CompareField(fields.Field):  # type: ignore[type-arg]
    """`compare`: one of `COMPARE_PERIODS`, or an object with `start` and `end`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> CompareSpec:
        if isinstance(value, dict):
            ends: tuple[datetime, datetime] = _COMPARE_INTERVAL.load(value)
            return ends
        if isinstance(value, str) and value in COMPARE_PERIODS:
            return value
        raise ValidationError(f"One of {', '.join(COMPARE_PERIODS)}, or an object with start and end.")


class AggregationSchema(_StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(AGGREGATIONS))
    fields_ = fields.List(fields.String(), data_key="fields")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> list[Aggregation]:
        agg_type = data["type"]
        allowed = AGGREGATIONS[agg_type][0]
        if allowed is None:
            return [Aggregation(agg_type, None, aggregation_output(agg_type, None))]
        names = data.get("fields_") or []
        if not names or any(name not in allowed for name in names):
            raise ValidationError(f"{agg_type} takes fields from: {', '.join(allowed)}.", "fields")
        return [Aggregation(agg_type, name, aggregation_output(agg_type, name)) for name in names]


class OrderBySchema(_StrictSchema):
    field = fields.String(required=True)
    direction = fields.String(load_default="asc", validate=validate.OneOf(ORDER_DIRECTIONS))

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> OrderBy:
        return OrderBy(data["field"], data["direction"] == "desc")


# Built once, not per request: a marshmallow field copies its arguments on construction.
_FILTER_LIST = fields.List(FilterField())


class FiltersField(fields.Field):  # type: ignore[type-arg]
    """`filters`: one filter object, null, or a list of filters that are ANDed."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Filter | None:
        if isinstance(value, list):
            if not value:
                return None
            loaded = cast(list[Filter], _FILTER_LIST.deserialize(value))
            return loaded[0] if len(loaded) == 1 else And(tuple(loaded))
        return load_filter(value)


def _walk_filters(raw: Any, depth: int = 1) -> Iterator[tuple[int, Any]]:
    """Every node of a raw filter tree with its depth, without recursing in Python."""
    stack = [(depth, raw)]
    while stack:
        level, node = stack.pop()
        yield level, node
        children: list[Any] = []
        if isinstance(node, list):
            children = node
        elif isinstance(node, dict):
            inner = node.get("fields", node.get("field"))
            children = inner if isinstance(inner, list) else [inner] if inner is not None else []
        stack.extend((level + 1, child) for child in children)


class QuerySchema(_StrictSchema):
    """The whole request body; construct with the deployment's `QueryLimits`."""

    interval = fields.Nested(IntervalSchema, required=True)
    granularity = fields.String(required=True, validate=validate.OneOf(GRANULARITIES))
    group_by = fields.List(fields.String(validate=validate.OneOf(DIMENSIONS)), load_default=list)
    aggregations = fields.List(
        fields.Nested(AggregationSchema), required=True, validate=validate.Length(min=1, max=MAX_AGGREGATIONS)
    )
    filters = FiltersField(load_default=None, allow_none=True)
    limit = JsonInteger(validate=validate.Range(min=1))
    order_by = fields.List(fields.Nested(OrderBySchema), load_default=list)
    offset = JsonInteger(validate=validate.Range(min=0))
    totals = StrictBoolean(load_default=False)
    compare = CompareField()

    def __init__(self, limits: QueryLimits | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limits = limits or QueryLimits()

    @pre_load
    def check_filter_size(self, data: Any, **kwargs: Any) -> Any:
        # Before any field loads: a hostile tree must be refused before it is recursed into.
        raw = data.get("filters") if isinstance(data, dict) else None
        nodes = list(_walk_filters(raw)) if raw is not None else []
        if len(nodes) > self.limits.max_filter_nodes:
            raise ValidationError(f"At most {self.limits.max_filter_nodes} filter nodes.", "filters")
        if nodes and max(level for level, _ in nodes) > self.limits.max_filter_depth:
            raise ValidationError(f"Filters nest at most {self.limits.max_filter_depth} deep.", "filters")
        values = sum(
            len(n["values"]) for _, n in nodes if isinstance(n, dict) and isinstance(n.get("values"), list)
        )
        if values > self.limits.max_filter_values:
            raise ValidationError(f"At most {self.limits.max_filter_values} filter values in all.", "filters")
        return data

    @validates_schema
    def check_rules(self, data: dict[str, Any], **kwargs: Any) -> None:
        self._check_interval_span(data["interval"])
        self._check_group_by(data["group_by"])
        aggregations = [agg for group in data["aggregations"] for agg in group]
        self._check_outputs(aggregations)
        self._check_top_n(data, aggregations)
        self._check_offset(data)

    def _check_interval_span(self, interval: Interval, field: str = "interval") -> None:
        if interval.end - interval.start > timedelta(days=self.limits.max_interval_days):
            raise ValidationError(f"The interval spans at most {self.limits.max_interval_days} days.", field)

    def _check_group_by(self, group_by: list[str]) -> None:
        if len(set(group_by)) != len(group_by):
            raise ValidationError("Group-by dimensions must be distinct.", "group_by")
        if len(group_by) > self.limits.max_group_by:
            raise ValidationError(f"At most {self.limits.max_group_by} group-by dimensions.", "group_by")

    def _check_outputs(self, aggregations: list[Aggregation]) -> None:
        outputs = [agg.output for agg in aggregations]
        duplicates = sorted({name for name in outputs if outputs.count(name) > 1})
        if duplicates:
            raise ValidationError(f"Two aggregations produce {', '.join(duplicates)}.", "aggregations")

    def _check_top_n(self, data: dict[str, Any], aggregations: list[Aggregation]) -> None:
        limit, order_by = data.get("limit"), data["order_by"]
        if (limit is not None or order_by) and not data["group_by"]:
            raise ValidationError("limit and order_by apply to grouped queries.", "group_by")
        if limit is not None and limit > self.limits.max_result_rows:
            raise ValidationError(f"At most {self.limits.max_result_rows}.", "limit")
        columns = set(data["group_by"]) | {agg.output for agg in aggregations}
        unknown = [order.field for order in order_by if order.field not in columns]
        if unknown:
            raise ValidationError(f"Order by the output columns: {', '.join(sorted(columns))}.", "order_by")
        if len({order.field for order in order_by}) != len(order_by):
            raise ValidationError("Order by each column once.", "order_by")

    def _check_offset(self, data: dict[str, Any]) -> None:
        offset, limit = data.get("offset"), data.get("limit")
        if offset is None:
            return
        if limit is None:
            raise ValidationError("offset pages through a limited result: give a limit too.", "offset")
        if offset + limit > self.limits.max_result_rows:
            raise ValidationError(f"offset + limit is at most {self.limits.max_result_rows}.", "offset")

    def _comparison(self, interval: Interval, spec: CompareSpec | None) -> Interval | None:
        """The interval `compare` names, held to the rules of `interval`; errors under `compare`."""
        if spec is None:
            return None
        if isinstance(spec, str):
            compared = COMPARISONS[spec](interval)
        else:
            compared = Interval(spec[0], spec[1], interval.time_zone)
        try:
            _check_ends(compared.start, compared.end)
        except ValidationError as exc:
            messages = [f"The {spec} interval: {message}" for message in cast(list[str], exc.messages)]
            raise ValidationError(messages, "compare") from exc
        self._check_interval_span(compared, "compare")
        return compared

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Query:
        return Query(
            interval=data["interval"],
            granularity=data["granularity"],
            group_by=tuple(data["group_by"]),
            aggregations=tuple(agg for group in data["aggregations"] for agg in group),
            filter=data["filters"],
            limit=data.get("limit"),
            order_by=tuple(data["order_by"]),
            offset=data.get("offset", 0),
            totals=data["totals"],
            compare=self._comparison(data["interval"], data.get("compare")),
        )
