"""Typed, validated form of a visitor_sessions query: what the schemas load a payload into."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

Scalar = str | int | float | None


def scalar_text(value: Scalar) -> str | None:
    """A filter value as the text a string dimension is compared with (5.0 → "5")."""
    if value is None or isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(value)


@dataclass(frozen=True)
class Interval:
    """Half-open `[start, end)` in absolute time, with the zone buckets are aligned in."""

    start: datetime
    end: datetime
    time_zone: ZoneInfo


@dataclass(frozen=True)
class Aggregation:
    """One output metric: `type` over `field` (None for count) named `output`."""

    type: str
    field: str | None
    output: str


@dataclass(frozen=True)
class Selector:
    dimension: str
    value: Scalar


@dataclass(frozen=True)
class In:
    dimension: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Bound:
    dimension: str
    lower: str | int | float | None
    upper: str | int | float | None
    lower_strict: bool
    upper_strict: bool
    ordering: str


@dataclass(frozen=True)
class Regex:
    dimension: str
    pattern: str


@dataclass(frozen=True)
class Like:
    dimension: str
    pattern: str


@dataclass(frozen=True)
class Search:
    dimension: str
    case_sensitive: bool
    value: str


@dataclass(frozen=True)
class And:
    fields: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    fields: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    field: Filter


Leaf = Selector | In | Bound | Regex | Like | Search
Filter = And | Or | Not | Leaf


@dataclass(frozen=True)
class OrderBy:
    field: str
    descending: bool


@dataclass(frozen=True)
class Query:
    """A validated visitor_sessions query; the organization comes from the URL, not from here."""

    interval: Interval
    granularity: str
    group_by: tuple[str, ...]
    aggregations: tuple[Aggregation, ...]
    filter: Filter | None
    limit: int | None
    order_by: tuple[OrderBy, ...]
    offset: int = 0  # rows of the ordered result skipped before `limit` (grouped queries only)
    totals: bool = False  # whether the answer carries each metric over the whole interval
    compare: Interval | None = None  # the other interval the same query is answered for

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Output names of the metrics, in response column order."""
        return tuple(agg.output for agg in self.aggregations)
