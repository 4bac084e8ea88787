"""The Druid ingestion spec stores exactly the columns `proxy/query/catalog.py` promises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proxy.query.catalog import (
    COUNT_METRIC,
    DIMENSION_COLUMNS,
    HLL_METRICS,
    ORGANIZATION_COLUMN,
    SKETCH_LG_K,
    SKETCH_METRICS,
    SUM_METRICS,
)
from schemas.vocabulary import DIMENSIONS, DimensionKind

SPEC_PATH = Path(__file__).resolve().parents[2] / "druid_specs" / "visitor_sessions.json"
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text())
SCHEMA: dict[str, Any] = SPEC["spec"]["dataSchema"]
DIMENSION_SPECS: dict[str, dict[str, Any]] = {d["name"]: d for d in SCHEMA["dimensionsSpec"]["dimensions"]}
METRIC_SPECS: dict[str, dict[str, Any]] = {m["name"]: m for m in SCHEMA["metricsSpec"]}

# Public kind → how Druid must store it; arrays must be multi-value strings, never ARRAY<STRING>.
STORED_AS: dict[DimensionKind, dict[str, Any]] = {
    DimensionKind.STRING: {"type": "string"},
    DimensionKind.NUMBER: {"type": "long"},
    DimensionKind.ARRAY: {"type": "string", "multiValueHandling": "SORTED_ARRAY"},
}


def test_spec_dimensions_are_the_catalog_columns_plus_organization() -> None:
    expected = {*DIMENSION_COLUMNS.values(), ORGANIZATION_COLUMN}
    assert set(DIMENSION_SPECS) == expected


def test_organization_is_a_string_dimension() -> None:
    assert DIMENSION_SPECS[ORGANIZATION_COLUMN] == {"type": "string", "name": ORGANIZATION_COLUMN}


@pytest.mark.parametrize("public_name", sorted(DIMENSION_COLUMNS))
def test_dimension_is_stored_as_its_public_kind(public_name: str) -> None:
    column = DIMENSION_COLUMNS[public_name]
    expected = {"name": column, **STORED_AS[DIMENSIONS[public_name]]}
    assert DIMENSION_SPECS[column] == expected


def test_spec_metrics_are_exactly_the_catalog_metrics_and_sketches() -> None:
    expected = {COUNT_METRIC, *SUM_METRICS.values(), *HLL_METRICS.values(), *SKETCH_METRICS.values()}
    assert set(METRIC_SPECS) == expected


def test_count_metric() -> None:
    assert METRIC_SPECS[COUNT_METRIC] == {"type": "count", "name": COUNT_METRIC}


@pytest.mark.parametrize(("field", "metric"), sorted(SUM_METRICS.items()))
def test_sum_metric_sums_its_field(field: str, metric: str) -> None:
    assert METRIC_SPECS[metric] == {"type": "longSum", "name": metric, "fieldName": field}


@pytest.mark.parametrize(("field", "metric"), sorted(HLL_METRICS.items()))
def test_hyper_unique_metric_reads_its_field(field: str, metric: str) -> None:
    assert METRIC_SPECS[metric] == {"type": "hyperUnique", "name": metric, "fieldName": field}


@pytest.mark.parametrize(("field", "metric"), sorted(SKETCH_METRICS.items()))
def test_sketch_metric_builds_hll4_at_the_catalog_lg_k(field: str, metric: str) -> None:
    assert METRIC_SPECS[metric] == {
        "type": "HLLSketchBuild",
        "name": metric,
        "fieldName": field,
        "lgK": SKETCH_LG_K,
        "tgtHllType": "HLL_4",
    }


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("type",), "index_parallel"),
        (("spec", "dataSchema", "timestampSpec"), {"column": "timestamp", "format": "iso"}),
        (("spec", "dataSchema", "granularitySpec", "rollup"), False),
        (("spec", "dataSchema", "granularitySpec", "queryGranularity"), "none"),
        (("spec", "dataSchema", "granularitySpec", "segmentGranularity"), "day"),
        (("spec", "ioConfig", "inputFormat"), {"type": "json"}),
        (("spec", "ioConfig", "appendToExisting"), False),
        (("spec", "ioConfig", "dropExisting"), True),
        (("spec", "tuningConfig", "maxNumConcurrentSubTasks"), 1),
    ],
)
def test_spec_setting(path: tuple[str, ...], expected: Any) -> None:
    node: Any = SPEC
    for key in path:
        node = node[key]
    assert node == expected


def test_intermediate_spills_are_uncompressed() -> None:
    # Merging many compressed spills of a segment runs the Indexer out of direct memory: one
    # decompression buffer per column per spill (docs/druid-behaviour.md (j)).
    assert SPEC["spec"]["tuningConfig"]["indexSpecForIntermediatePersists"] == {
        "dimensionCompression": "uncompressed",
        "metricCompression": "none",
        "longEncoding": "longs",
    }
