"""The result plan every backend shares, fixed before the query runs: columns, buckets, order, row cap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from proxy.errors import BadRequest
from proxy.query.buckets import iter_buckets
from proxy.query.ordering import SortColumn, sort_columns
from schemas.model import Aggregation, Interval, Query
from schemas.vocabulary import GRANULARITY_SPECS, BucketUnit

# A backend row: the bucket start in epoch milliseconds, then the group values and the metric
# values in plan order. Druid's array rows and DuckDB's tuples have this shape as they come.
BackendRow = Sequence[Any]


@dataclass(frozen=True)
class ResultPlan:
    """Everything needed to turn backend rows into the public response, fixed at plan time."""

    query: Query
    bucket_starts_ms: tuple[int, ...]
    max_rows: int
    # The same query over the `compare` interval, planned as a query of its own.
    comparison: ResultPlan | None = None

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
    def one_bucket(self) -> bool:
        """Whether the whole interval is one bucket (granularity `all`)."""
        return GRANULARITY_SPECS[self.query.granularity].unit is BucketUnit.ALL

    @property
    def sort_columns(self) -> tuple[SortColumn, ...]:
        """The result order, most significant column first (see `proxy.query.ordering`)."""
        return sort_columns(self.query)

    @property
    def row_limit(self) -> int:
        """Rows to ask the backend for: the caller's limit, or one past the cap to detect overflow."""
        return self.query.limit if self.query.limit is not None else self.max_rows + 1

    @property
    def totals_intervals(self) -> tuple[Interval, ...]:
        """The intervals whose totals the answer carries: this one, then the comparison's."""
        if not self.query.totals:
            return ()
        compared = () if self.comparison is None else (self.comparison.query.interval,)
        return (self.query.interval, *compared)

    @property
    def latest_end(self) -> datetime:
        """Where the last interval the answer reads ends (this one's or the comparison's)."""
        ends = [self.query.interval.end] + (
            [] if self.comparison is None else [self.comparison.query.interval.end]
        )
        return max(ends)

    def fields(self) -> list[dict[str, str]]:
        """The response's column descriptions, in order."""
        dims = [{"name": name, "type": "dimension"} for name in ("timestamp", *self.group_by)]
        return dims + [{"name": agg.output, "type": "metric"} for agg in self.metrics]


def _epoch_ms(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)


@lru_cache(maxsize=64)
def _bucket_starts_ms(interval: Interval, granularity: str, limit: int) -> tuple[int, ...]:
    # A pure function of its (hashable) arguments, and dashboards ask for the same intervals
    # over and over, while stepping through zone-aware buckets is slow. At most 64 entries of
    # at most `limit` starts, so the memory stays bounded.
    return tuple(_epoch_ms(start) for start in islice(iter_buckets(interval, granularity), limit))


def _checked_starts(query: Query, max_buckets: int) -> tuple[int, ...]:
    starts = _bucket_starts_ms(query.interval, query.granularity, max_buckets + 1)
    if len(starts) > max_buckets:
        raise BadRequest(
            f"The interval holds more than {max_buckets} {query.granularity} buckets; "
            "use a coarser granularity or a shorter interval.",
            {"granularity": [f"At most {max_buckets} buckets."]},
        )
    return starts


def plan_result(query: Query, max_buckets: int, max_rows: int) -> ResultPlan:
    """Fix the buckets of a query (and of its comparison); too many buckets is the caller's error."""
    comparison = None
    if query.compare is not None:
        compared = replace(query, interval=query.compare, compare=None, totals=False)
        comparison = ResultPlan(compared, _checked_starts(compared, max_buckets), max_rows)
    return ResultPlan(query, _checked_starts(query, max_buckets), max_rows, comparison)
