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

# Druid's built-in HyperLogLog columns (`hyperUnique` metrics), kept to compare accuracy.
HLL_METRICS: dict[str, str] = {
    "session_id": "session_id_hll",
    "visitor_id": "visitor_id_hll",
}

# The columns behind the public `hyperUnique`: DataSketches HLL sketches. Measured on the
# integration data, the built-in collector missed by up to 7% at a few dozen visitors; the
# sketch keeps small sets exact (list mode) and has ~0.8% standard error at lgK 14.
SKETCH_METRICS: dict[str, str] = {
    "session_id": "session_id_sketch",
    "visitor_id": "visitor_id_sketch",
}
SKETCH_LG_K = 14

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
