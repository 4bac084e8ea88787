"""Public names → storage columns, shared by both backends; `druid_specs/` must agree with it."""

from __future__ import annotations

from schemas.vocabulary import DIMENSIONS

TIME_COLUMN = "__time"
ORGANIZATION_COLUMN = "organization_id"
COUNT_METRIC = "count"

# Public dimension → stored column. Identity today, but the indirection is the contract:
# nothing outside this table may assume a public name is a column name.
DIMENSION_COLUMNS: dict[str, str] = {name: name for name in DIMENSIONS}

# avg field → the ingested sum metric the average divides by the row count.
SUM_METRICS: dict[str, str] = {
    "session_duration_secs": "session_duration_secs_sum",
    "distinct_visited_urls_count": "distinct_visited_urls_count_sum",
}

# hyperUnique field → the ingested HyperLogLog metric column.
HLL_METRICS: dict[str, str] = {
    "session_id": "session_id_hll",
    "visitor_id": "visitor_id_hll",
}

# ISO-8601 period of each bucketed granularity (`all` has none).
GRANULARITY_PERIODS: dict[str, str] = {
    "minute": "PT1M",
    "fifteen_minute": "PT15M",
    "thirty_minute": "PT30M",
    "hour": "PT1H",
    "day": "P1D",
    "week": "P1W",
    "month": "P1M",
    "quarter": "P3M",
    "year": "P1Y",
}
