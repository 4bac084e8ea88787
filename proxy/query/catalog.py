"""Public names → storage columns, shared by both backends; `druid_specs/` must agree with it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from proxy.errors import UnsupportedQuery
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

# The columns behind the public `hyperUnique`: DataSketches HLL sketches. The built-in
# collector errs noticeably on small sets; the sketch keeps them exact (list mode).
SKETCH_METRICS: dict[str, str] = {
    "session_id": "session_id_sketch",
    "visitor_id": "visitor_id_sketch",
}
SKETCH_LG_K = 14

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


def supported(table: Mapping[_Key, _Value], key: _Key, kind: str) -> _Value:
    """`table[key]`; a key the table lacks is a query this backend cannot run."""
    try:
        return table[key]
    except KeyError:
        name = key.__name__ if isinstance(key, type) else getattr(key, "value", key)
        raise UnsupportedQuery(f"This backend cannot run the {kind} {name!r}.") from None
