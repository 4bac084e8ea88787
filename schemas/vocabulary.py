"""The public vocabulary of the visitor_sessions API: every name a caller may use."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from schemas.model import And, Bound, Filter, In, Like, Not, Or, Regex, Search, Selector


class DimensionKind(Enum):
    """How a dimension stores its values, which decides filter and group semantics."""

    STRING = "string"
    NUMBER = "number"
    ARRAY = "array"


# The long range both engines store numeric dimensions in; filter values must fit in it.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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


class BucketUnit(Enum):
    """What a granularity's buckets are counted in, which decides how they align in a zone."""

    ALL = "all"  # one bucket: the whole interval
    MINUTES = "minutes"  # fixed minutes from local midnight
    HOURS = "hours"  # local clock hours
    DAYS = "days"  # calendar days from local midnight
    WEEKS = "weeks"  # calendar weeks from Monday's local midnight
    MONTHS = "months"  # calendar months from the first of a month


@dataclass(frozen=True)
class Granularity:
    """A public granularity: its ISO-8601 period (None for `all`) and its bucket size."""

    period: str | None
    unit: BucketUnit
    count: int


GRANULARITY_SPECS: dict[str, Granularity] = {
    "all": Granularity(None, BucketUnit.ALL, 1),
    "minute": Granularity("PT1M", BucketUnit.MINUTES, 1),
    "fifteen_minute": Granularity("PT15M", BucketUnit.MINUTES, 15),
    "thirty_minute": Granularity("PT30M", BucketUnit.MINUTES, 30),
    "hour": Granularity("PT1H", BucketUnit.HOURS, 1),
    "day": Granularity("P1D", BucketUnit.DAYS, 1),
    "week": Granularity("P1W", BucketUnit.WEEKS, 1),
    "month": Granularity("P1M", BucketUnit.MONTHS, 1),
    "quarter": Granularity("P3M", BucketUnit.MONTHS, 3),
    "year": Granularity("P1Y", BucketUnit.MONTHS, 12),
}
GRANULARITIES: tuple[str, ...] = tuple(GRANULARITY_SPECS)

# Aggregation type → the fields it accepts (None: takes no field) and its output-name suffix.
AGGREGATIONS: dict[str, tuple[tuple[str, ...] | None, str]] = {
    "count": (None, "count"),
    "avg": (("session_duration_secs", "distinct_visited_urls_count"), "_avg"),
    "hyperUnique": (("session_id", "visitor_id"), "_hyper_unique"),
}

# Aggregation type → the JSON type of its answer cells.
AGGREGATION_VALUES: dict[str, str] = {"count": "integer", "avg": "number or null", "hyperUnique": "number"}

# Filter type → the typed node it loads into.
FILTER_TYPES: dict[str, type[Filter]] = {
    "and": And,
    "or": Or,
    "not": Not,
    "selector": Selector,
    "in": In,
    "bound": Bound,
    "regex": Regex,
    "like": Like,
    "search": Search,
}

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

# The intervals `compare` may name instead of giving one (see schemas.periods).
COMPARE_PERIODS: tuple[str, ...] = ("previous_period", "previous_year")


def aggregation_output(agg_type: str, field: str | None) -> str:
    """The output column name an aggregation produces."""
    suffix = AGGREGATIONS[agg_type][1]
    return suffix if field is None else f"{field}{suffix}"
