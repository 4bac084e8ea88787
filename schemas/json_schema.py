"""The request body as JSON Schema 2020-12, built from the vocabulary and the caps the marshmallow
schemas enforce, so the published contract says every rule JSON Schema can say.

What it cannot say (rules across fields, or beyond a schema's reach) is `CROSS_FIELD_RULES`: the
OpenAPI operation's description and `/meta` list them.
"""

from __future__ import annotations

from typing import Any

from schemas.filters import MAX_PATTERN_LENGTH, MAX_VALUE_LENGTH, NUMERIC_TEXT
from schemas.request import EARLIEST, LATEST, MAX_AGGREGATIONS, ZONES, QueryLimits
from schemas.vocabulary import (
    AGGREGATIONS,
    BOUND_ORDERINGS,
    COMPARE_PERIODS,
    DIMENSIONS,
    FILTER_TYPES,
    GRANULARITIES,
    INT64_MAX,
    INT64_MIN,
    ORDER_DIRECTIONS,
    SEARCH_TYPES,
    TEXT_KINDS,
    DimensionKind,
    aggregation_output,
)

# Field path → the rule the server enforces there that no JSON Schema keyword expresses.
CROSS_FIELD_RULES: dict[str, str] = {
    "interval.start": "between 1000-01-01 and 9000-01-01 (UTC)",
    "interval.end": "after interval.start, between 1000-01-01 and 9000-01-01 (UTC)",
    "interval": "spans at most max_interval_days days",
    "granularity": "at most max_buckets buckets over the interval (and over the compare interval)",
    "aggregations": "each output column (see /meta) produced once",
    "group_by": "not empty when limit or a non-empty order_by is given",
    "order_by": "names output columns of this query (group_by dimensions, aggregation outputs), each once",
    # An if/then (offset → limit) would say the first half, but schemathesis 4.32.5's generator
    # fails on it ("Cannot generate an array with 1 demanded elements").
    "offset": "only with limit; offset + limit at most max_result_rows",
    "compare": "the interval it names (previous_period, previous_year, or given) obeys the interval "
    "rules: within 1000-01-01 and 9000-01-01 (UTC), end after start, at most max_interval_days days",
    "compare.start": "between 1000-01-01 and 9000-01-01 (UTC)",
    "compare.end": "after compare.start, between 1000-01-01 and 9000-01-01 (UTC)",
    "filters": "at most max_filter_depth deep, max_filter_nodes nodes, max_filter_values values in all",
    "filters…value": "numeric dimensions take finite numbers, numeric text or null",
    "filters…values": "numeric dimensions take finite numbers, numeric text or null",
    "filters…lower": "a numeric ordering (the default on numeric dimensions) needs finite numeric bounds",
    "filters…pattern": "a regex the engines share, cheap on both (docs/api.md); a like pattern ends "
    "without a lone escape",
}
SCHEMA_PREFIX = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    """A reference to the component `name`."""
    return {"$ref": SCHEMA_PREFIX + name}


def _object(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


def _dimensions(kinds: frozenset[DimensionKind] | None = None) -> list[str]:
    return [name for name, kind in DIMENSIONS.items() if kinds is None or kind in kinds]


_NUMERIC = frozenset({DimensionKind.NUMBER})
_NUMBER = {"type": "number", "minimum": INT64_MIN, "maximum": INT64_MAX}
_TEXT = {"type": "string", "maxLength": MAX_VALUE_LENGTH}
_NUMERIC_TEXT = {"type": "string", "maxLength": MAX_VALUE_LENGTH, "pattern": f"^{NUMERIC_TEXT.pattern}$"}


def _on_numeric_dimension(then: dict[str, Any]) -> dict[str, Any]:
    """`then` applies when the filter's dimension is numeric."""
    return {"if": {"properties": {"dimension": {"enum": _dimensions(_NUMERIC)}}}, "then": then}


def _filter(kind: str, properties: dict[str, Any], required: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    return _object({"type": {"const": kind}, **properties}, ("type", *required), **extra)


def _logic_filters(kind: str) -> dict[str, Any]:
    items = {"type": "array", "items": ref("Filter"), "minItems": 1}
    return _filter(kind, {"fields": items}, ("fields",))


def _value_filters(limits: QueryLimits) -> dict[str, dict[str, Any]]:
    value = {"anyOf": [_TEXT, _NUMBER, {"type": "null"}]}
    numeric_value = {"anyOf": [_NUMERIC_TEXT, _NUMBER, {"type": "null"}]}
    dimension = {"enum": _dimensions()}
    return {
        "selector": _filter(
            "selector",
            {"dimension": dimension, "value": value},
            ("dimension", "value"),
            **_on_numeric_dimension({"properties": {"value": numeric_value}}),
        ),
        "in": _filter(
            "in",
            {
                "dimension": dimension,
                "values": {
                    "type": "array",
                    "items": value,
                    "minItems": 1,
                    "maxItems": limits.max_filter_values,
                },
            },
            ("dimension", "values"),
            **_on_numeric_dimension({"properties": {"values": {"items": numeric_value}}}),
        ),
    }


def _bound_filter() -> dict[str, Any]:
    bound = {"anyOf": [_TEXT, _NUMBER]}
    numeric_bound = {"anyOf": [_NUMERIC_TEXT, _NUMBER]}
    text_dimension = {"properties": {"dimension": {"enum": _dimensions(TEXT_KINDS)}}}
    numeric_ordering = {
        "properties": {"dimension": {"enum": _dimensions(_NUMERIC)}, "ordering": {"const": "numeric"}}
    }
    orderings = sorted({name for names in BOUND_ORDERINGS.values() for name in names})
    return _filter(
        "bound",
        {
            "dimension": {"enum": _dimensions()},
            "lower": bound,
            "upper": bound,
            "lowerStrict": {"type": "boolean", "default": False},
            "upperStrict": {"type": "boolean", "default": False},
            "ordering": {"enum": orderings},
        },
        ("dimension",),
        allOf=[
            # `lower`, `upper` or both (as if/then: a client generator keeps the object's model).
            {"if": {"not": {"required": ["upper"]}}, "then": {"required": ["lower"]}},
            # Text dimensions order lexicographically only; numeric ones default to numeric.
            {"if": text_dimension, "then": {"properties": {"ordering": {"const": "lexicographic"}}}},
            {
                "if": {**numeric_ordering, "required": ["ordering"]},
                "then": {"properties": {"lower": numeric_bound, "upper": numeric_bound}},
            },
            {
                "if": {
                    "properties": {"dimension": numeric_ordering["properties"]["dimension"]},
                    "not": {"required": ["ordering"]},
                },
                "then": {"properties": {"lower": numeric_bound, "upper": numeric_bound}},
            },
        ],
    )


# A like pattern's every `\` escapes the character after it: none is left alone at the end.
LIKE_PATTERN = r"^(?:[^\\]|\\[\s\S])*$"


def _text_filters() -> dict[str, dict[str, Any]]:
    dimension = {"enum": _dimensions(TEXT_KINDS)}
    pattern = {"type": "string", "minLength": 1, "maxLength": MAX_PATTERN_LENGTH}
    query = _object(
        {"type": {"enum": list(SEARCH_TYPES)}, "value": {**_TEXT, "minLength": 1}}, ("type", "value")
    )
    return {
        "regex": _filter("regex", {"dimension": dimension, "pattern": pattern}, ("dimension", "pattern")),
        "like": _filter(
            "like",
            {"dimension": dimension, "pattern": {**pattern, "pattern": LIKE_PATTERN}},
            ("dimension", "pattern"),
        ),
        "search": _filter("search", {"dimension": dimension, "query": query}, ("dimension", "query")),
    }


def filter_components(limits: QueryLimits) -> dict[str, dict[str, Any]]:
    """Filter type → the JSON Schema of its object (component `<Type>Filter`)."""
    built = {
        "and": _logic_filters("and"),
        "or": _logic_filters("or"),
        "not": _filter("not", {"field": ref("Filter")}, ("field",)),
        **_value_filters(limits),
        "bound": _bound_filter(),
        **_text_filters(),
    }
    return {kind: built[kind] for kind in FILTER_TYPES}


def filter_component_name(kind: str) -> str:
    """The component name of one filter type's schema."""
    return f"{kind[0].upper()}{kind[1:]}Filter"


def aggregation_component_name(agg_type: str) -> str:
    """The component name of one aggregation type's schema."""
    return f"{agg_type[0].upper()}{agg_type[1:]}Aggregation"


def aggregation_components() -> dict[str, dict[str, Any]]:
    """Aggregation type → the JSON Schema of its object, with the fields it accepts."""
    built = {}
    for agg_type, (allowed, _) in AGGREGATIONS.items():
        fields: dict[str, Any]
        if allowed is None:
            fields = {"type": "array", "items": {"type": "string"}, "description": "Ignored."}
        else:
            fields = {"type": "array", "items": {"enum": list(allowed)}, "minItems": 1, "uniqueItems": True}
        built[agg_type] = _object(
            {"type": {"const": agg_type}, "fields": fields},
            ("type",) if allowed is None else ("type", "fields"),
        )
    return built


def output_columns() -> list[str]:
    """Every column an answer may have: the dimensions, then every aggregation output."""
    outputs = [
        aggregation_output(agg_type, name)
        for agg_type, (allowed, _) in AGGREGATIONS.items()
        for name in (allowed or (None,))
    ]
    return [*DIMENSIONS, *outputs]


_INSTANT = {
    "type": "string",
    "format": "date-time",
    "description": f"With an offset; between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC).",
}


def _interval() -> dict[str, Any]:
    zone = {"enum": sorted(ZONES), "default": "UTC", "description": "An IANA time zone."}
    return _object({"start": _INSTANT, "end": _INSTANT, "time_zone": zone}, ("start", "end"))


def _compare() -> dict[str, Any]:
    given = _object(
        {"start": _INSTANT, "end": _INSTANT}, ("start", "end"), description="In interval.time_zone."
    )
    return {
        "anyOf": [{"enum": list(COMPARE_PERIODS)}, given],
        "description": "Answer the same query over another interval too (`comparison` in the result): "
        "the previous period of the same length (whole local days when both ends are local midnights), "
        "the same wall-clock times a year earlier, or the interval given.",
    }


def _grouped(key: str, non_empty: bool) -> dict[str, Any]:
    """`key` given (non-empty, if asked) → `group_by` is given and not empty."""
    present: dict[str, Any] = {"required": [key]}
    if non_empty:
        present["properties"] = {key: {"minItems": 1}}
    return {"if": present, "then": {"required": ["group_by"], "properties": {"group_by": {"minItems": 1}}}}


def query_component(limits: QueryLimits) -> dict[str, Any]:
    """The JSON Schema of the whole request body."""
    order = _object(
        {
            "field": {"enum": output_columns()},
            "direction": {"enum": list(ORDER_DIRECTIONS), "default": "asc"},
        },
        ("field",),
    )
    filters = {"anyOf": [ref("Filter"), {"type": "array", "items": ref("Filter")}, {"type": "null"}]}
    return _object(
        {
            "interval": _interval(),
            "granularity": {"enum": list(GRANULARITIES)},
            "group_by": {
                "type": "array",
                "items": {"enum": _dimensions()},
                "uniqueItems": True,
                "maxItems": limits.max_group_by,
                "default": [],
            },
            "aggregations": {
                "type": "array",
                "items": ref("Aggregation"),
                "minItems": 1,
                "uniqueItems": True,
                "maxItems": MAX_AGGREGATIONS,
            },
            "filters": filters,
            "limit": {"type": "integer", "minimum": 1, "maximum": limits.max_result_rows},
            "order_by": {"type": "array", "items": order, "default": []},
            "offset": {
                "type": "integer",
                "minimum": 0,
                "maximum": limits.max_result_rows - 1,
                "description": "With `limit`: skip this many rows of the ordered result first (paging).",
            },
            "totals": {
                "type": "boolean",
                "default": False,
                "description": "Add `totals`: each metric over every matching session of the interval.",
            },
            "compare": _compare(),
        },
        ("interval", "granularity", "aggregations"),
        allOf=[
            _grouped("limit", non_empty=False),
            _grouped("order_by", non_empty=True),
        ],
    )


def union(names: dict[str, str]) -> dict[str, Any]:
    """A `oneOf` over components, told apart by their `type` (value → component name)."""
    refs = {value: SCHEMA_PREFIX + name for value, name in names.items()}
    return {
        "oneOf": [{"$ref": target} for target in refs.values()],
        "discriminator": {"propertyName": "type", "mapping": refs},
    }


def request_components(limits: QueryLimits) -> dict[str, dict[str, Any]]:
    """Every component the request body's schema refers to, by name."""
    filters = filter_components(limits)
    aggregations = aggregation_components()
    return {
        "VisitorSessionsQuery": query_component(limits),
        "Aggregation": union({agg: aggregation_component_name(agg) for agg in aggregations}),
        **{aggregation_component_name(agg): schema for agg, schema in aggregations.items()},
        "Filter": union({kind: filter_component_name(kind) for kind in filters}),
        **{filter_component_name(kind): schema for kind, schema in filters.items()},
    }
