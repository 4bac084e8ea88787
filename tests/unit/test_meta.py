"""`.../meta` is the vocabulary the schemas validate against, the rules the published schema
cannot state, and this deployment's limits — the same limits the document's schema carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.json_schema import CROSS_FIELD_RULES
from schemas.vocabulary import (
    AGGREGATION_VALUES,
    AGGREGATIONS,
    DIMENSIONS,
    FILTER_TYPES,
    GRANULARITIES,
    aggregation_output,
)
from tests.unit.web import QUERY, Web, make_web, url


@pytest.fixture
def web(tmp_path: Path) -> Web:
    return make_web(tmp_path)


@pytest.fixture
def meta(web: Web) -> dict[str, Any]:
    return dict(web.client.get(url(suffix="/meta"), headers=web.auth("a")).json)


def test_meta_lists_the_vocabulary(meta: dict[str, Any]) -> None:
    assert {d["name"]: d["kind"] for d in meta["dimensions"]} == {
        name: kind.value for name, kind in DIMENSIONS.items()
    }
    assert meta["filter_types"] == list(FILTER_TYPES)
    assert meta["granularities"] == list(GRANULARITIES)
    assert meta["compare_periods"] == ["previous_period", "previous_year"]
    outputs = {(agg["type"], o["field"]): o["output"] for agg in meta["aggregations"] for o in agg["outputs"]}
    expected = {
        (agg_type, name): aggregation_output(agg_type, name)
        for agg_type, (allowed, _) in AGGREGATIONS.items()
        for name in (allowed or (None,))
    }
    assert outputs == expected
    assert {agg["type"]: agg["fields"] for agg in meta["aggregations"]} == {
        agg_type: list(allowed) if allowed else None for agg_type, (allowed, _) in AGGREGATIONS.items()
    }


def test_meta_says_each_aggregations_cell_type(meta: dict[str, Any]) -> None:
    assert {agg["type"]: agg["value"] for agg in meta["aggregations"]} == AGGREGATION_VALUES
    assert AGGREGATION_VALUES["count"] == "integer"


def test_meta_lists_the_rules_the_schema_cannot_state(meta: dict[str, Any]) -> None:
    assert meta["rules"] == CROSS_FIELD_RULES


def test_meta_limits_are_the_deployment_settings(tmp_path: Path) -> None:
    web = make_web(
        tmp_path,
        max_group_by=2,
        max_interval_days=31,
        rate_limit_per_org_per_min=0,
        max_concurrent_per_principal=3,
    )
    limits = web.client.get(url(suffix="/meta"), headers=web.auth("a")).json["limits"]
    assert limits == {
        "max_aggregations": 20,
        "max_interval_days": 31,
        "max_buckets": 10_000,
        "max_group_by": 2,
        "max_filter_depth": 10,
        "max_filter_nodes": 100,
        "max_filter_values": 1_000,
        "max_result_rows": 100_000,
        "max_body_bytes": 65_536,
        "request_timeout_secs": 30.0,
        "rate_limit_per_org_per_min": 0,
        "rate_limit_per_principal_per_min": 300,
        "max_concurrent_per_org": 3,  # derived: half the serving slots assumed (6)
        "max_concurrent_per_principal": 3,
    }
    too_many = {**QUERY, "group_by": ["city", "country", "os_name"]}
    assert web.client.post(url(), json=too_many, headers=web.auth("a")).status_code == 400


@pytest.mark.parametrize(
    ("setting", "value", "pointer"),
    [
        ("max_group_by", 2, ("VisitorSessionsQuery", "group_by", "maxItems")),
        ("max_result_rows", 50, ("VisitorSessionsQuery", "limit", "maximum")),
        ("max_filter_values", 7, ("InFilter", "values", "maxItems")),
    ],
)
def test_the_documents_caps_are_the_deployment_settings(
    tmp_path: Path, setting: str, value: int, pointer: tuple[str, str, str]
) -> None:
    web = make_web(tmp_path, **{setting: value})
    component, prop, keyword = pointer
    schemas = web.client.get("/openapi.json").json["components"]["schemas"]
    assert schemas[component]["properties"][prop][keyword] == value
