"""The public vocabulary, the catalog, the renderer and both translators cover each other exactly.

Each translation table is checked in both directions: every public name has its entry, and
no entry names anything the vocabulary lacks. That the catalog's columns are the ones
`druid_specs/` stores is `test_druid_spec.py`'s part.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

import pytest

from proxy.backends.druid import filters as druid_filters
from proxy.backends.druid import translator as druid
from proxy.backends.embedded import translator as embedded
from proxy.errors import UnsupportedQuery
from proxy.query import buckets, render
from proxy.query.catalog import DIMENSION_COLUMNS, HLL_METRICS, SKETCH_METRICS, SUM_METRICS
from proxy.query.plan import ResultPlan, plan_result
from schemas.filters import FILTER_SCHEMAS
from schemas.model import Aggregation, Not, Query, Selector
from schemas.request import QuerySchema
from schemas.vocabulary import (
    AGGREGATIONS,
    DIMENSIONS,
    FILTER_TYPES,
    GRANULARITY_SPECS,
    BucketUnit,
    DimensionKind,
)

_UNITS = {spec.unit for spec in GRANULARITY_SPECS.values()}
_BUCKETED_UNITS = _UNITS - {BucketUnit.ALL}

# (what, the public names, the table that must cover exactly them)
_COVERAGE: list[tuple[str, Collection[Any], Collection[Any]]] = [
    ("druid aggregators", AGGREGATIONS, druid.AGGREGATORS),
    ("embedded metrics", AGGREGATIONS, embedded.METRICS),
    ("rendered metric types", AGGREGATIONS, render.METRIC_OUTPUTS),
    ("filter schemas", FILTER_TYPES, FILTER_SCHEMAS),
    ("druid filters", FILTER_TYPES.values(), druid_filters.FILTERS),
    ("embedded filters", FILTER_TYPES.values(), embedded.FILTERS),
    ("druid granularities", _UNITS, druid.GRANULARITIES),
    ("embedded bucketing", _UNITS, embedded.BUCKETING),
    ("bucket alignments", _BUCKETED_UNITS, buckets.ALIGNMENTS),
    ("dimension columns", DIMENSIONS, DIMENSION_COLUMNS),
    ("druid output types", list(DimensionKind), druid.OUTPUT_TYPES),
    ("avg sum metrics", AGGREGATIONS["avg"][0] or (), SUM_METRICS),
    ("hyperUnique sketches", AGGREGATIONS["hyperUnique"][0] or (), SKETCH_METRICS),
    ("hyperUnique built-in collectors", AGGREGATIONS["hyperUnique"][0] or (), HLL_METRICS),
]


@pytest.mark.parametrize(
    ("public", "table"), [pytest.param(public, table, id=what) for what, public, table in _COVERAGE]
)
def test_table_covers_the_vocabulary_exactly(public: Collection[Any], table: Collection[Any]) -> None:
    assert set(table) == set(public)


def test_every_aggregation_field_is_a_dimension() -> None:
    fields = {field for allowed, _ in AGGREGATIONS.values() for field in allowed or ()}
    assert fields <= set(DIMENSIONS)


@pytest.mark.parametrize(("name", "spec"), sorted(GRANULARITY_SPECS.items()))
def test_granularity_period_spells_its_unit_and_size(name: str, spec: Any) -> None:
    spelled = {
        BucketUnit.ALL: None,
        BucketUnit.MINUTES: f"PT{spec.count}M",
        BucketUnit.HOURS: f"PT{spec.count}H",
        BucketUnit.DAYS: f"P{spec.count}D",
        BucketUnit.WEEKS: f"P{spec.count}W",
        BucketUnit.MONTHS: f"P{spec.count}M" if spec.count % 12 else f"P{spec.count // 12}Y",
    }
    assert spec.period == spelled[spec.unit]


@dataclass(frozen=True)
class _Median:
    """A filter node no table knows."""

    dimension: str


_QUERY: Query = QuerySchema().load(
    {
        "interval": {"start": "2019-03-01T00:00:00Z", "end": "2019-03-02T00:00:00Z"},
        "granularity": "hour",
        "group_by": ["city"],
        "aggregations": [{"type": "count"}],
    }
)

# Queries past validation that name what no table covers (as a newer schema could let through).
_UNSUPPORTED: dict[str, Query] = {
    "aggregation type": replace(_QUERY, aggregations=(Aggregation("median", "city", "city_median"),)),
    "filter node": replace(_QUERY, filter=_Median("city")),  # type: ignore[arg-type]
    "negated filter node": replace(_QUERY, filter=Not(_Median("city"))),  # type: ignore[arg-type]
    "granularity": replace(_QUERY, granularity="decade"),
    "group-by dimension": replace(_QUERY, group_by=("planet",)),
    "filter dimension": replace(_QUERY, filter=Selector("planet", "x")),
}
# Only Druid reads an average from an ingested sum metric; the embedded engine sums the column.
_DRUID_ONLY: dict[str, Query] = {
    "avg field": replace(_QUERY, aggregations=(Aggregation("avg", "city", "city_avg"),)),
}

_TRANSLATORS: dict[str, Callable[[ResultPlan], Any]] = {
    "druid": lambda plan: druid.translate(plan, "org", "visitor_sessions", "q", 1000),
    "embedded": lambda plan: embedded.translate(plan, "org"),
}
_CASES = [
    *((translator, query) for translator in _TRANSLATORS for query in _UNSUPPORTED.items()),
    *(("druid", query) for query in _DRUID_ONLY.items()),
]


def _plan(query: Query) -> ResultPlan:
    return ResultPlan(query, plan_result(_QUERY, 100, 100).bucket_starts_ms, 100)


@pytest.mark.parametrize(
    ("translator", "query"), [pytest.param(t, query, id=f"{t}-{what}") for t, (what, query) in _CASES]
)
def test_what_no_table_covers_is_an_unsupported_query(translator: str, query: Query) -> None:
    with pytest.raises(UnsupportedQuery) as caught:
        _TRANSLATORS[translator](_plan(query))
    assert (caught.value.status, caught.value.code) == (400, "unsupported_query")


def test_an_aggregation_type_the_renderer_lacks_is_an_unsupported_query() -> None:
    plan = _plan(_UNSUPPORTED["aggregation type"])
    with pytest.raises(UnsupportedQuery):
        render.render(plan, [[plan.bucket_starts_ms[0], "x", 1]])
