"""The public vocabulary of the visitor_sessions API: every name a caller may use."""

from __future__ import annotations

from enum import Enum


class DimensionKind(Enum):
    """How a dimension stores its values, which decides filter and group semantics."""

    STRING = "string"
    NUMBER = "number"
    ARRAY = "array"


DIMENSIONS: dict[str, DimensionKind] = {
    "browser_name": DimensionKind.STRING,
    "browser_version": DimensionKind.STRING,
    "city": DimensionKind.STRING,
    "country": DimensionKind.STRING,
    "device_type": DimensionKind.STRING,
    "ip_organization": DimensionKind.STRING,
    "os_name": DimensionKind.STRING,
    "session_id": DimensionKind.STRING,
    "visitor_id": DimensionKind.STRING,
    "session_duration_secs": DimensionKind.NUMBER,
    "distinct_visited_urls_count": DimensionKind.NUMBER,
    "distinct_visited_urls": DimensionKind.ARRAY,
    "distinct_landing_urls": DimensionKind.ARRAY,
    "distinct_referrer_urls": DimensionKind.ARRAY,
    "distinct_search_terms": DimensionKind.ARRAY,
    "rooms": DimensionKind.ARRAY,
}

GRANULARITIES: tuple[str, ...] = (
    "all",
    "minute",
    "fifteen_minute",
    "thirty_minute",
    "hour",
    "day",
    "week",
    "month",
    "quarter",
    "year",
)

# Aggregation type → the fields it accepts (None: takes no field) and its output-name suffix.
AGGREGATIONS: dict[str, tuple[tuple[str, ...] | None, str]] = {
    "count": (None, "count"),
    "avg": (("session_duration_secs", "distinct_visited_urls_count"), "_avg"),
    "hyperUnique": (("session_id", "visitor_id"), "_hyper_unique"),
}

FILTER_TYPES: tuple[str, ...] = (
    "and",
    "or",
    "not",
    "selector",
    "in",
    "bound",
    "regex",
    "like",
    "search",
)

SEARCH_TYPES: tuple[str, ...] = ("contains", "insensitive_contains")

# Which bound orderings make sense for which kind of dimension.
BOUND_ORDERINGS: dict[DimensionKind, tuple[str, ...]] = {
    DimensionKind.NUMBER: ("numeric", "lexicographic"),
    DimensionKind.STRING: ("lexicographic",),
    DimensionKind.ARRAY: ("lexicographic",),
}

# Pattern filters compare text, so they apply to string and array dimensions only.
TEXT_KINDS: frozenset[DimensionKind] = frozenset({DimensionKind.STRING, DimensionKind.ARRAY})

ORDER_DIRECTIONS: tuple[str, ...] = ("asc", "desc")


def aggregation_output(agg_type: str, field: str | None) -> str:
    """The output column name an aggregation produces."""
    suffix = AGGREGATIONS[agg_type][1]
    return suffix if field is None else f"{field}{suffix}"
