"""`/openapi.json` is valid OpenAPI 3.1 and describes what the service really accepts and
answers; `.../meta` is the vocabulary the schemas validate against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from proxy.errors import BackendError, BackendTimeout, BackendUnavailable
from proxy.web.openapi import META_ERRORS, META_PATH, QUERY_ERRORS, QUERY_PATH
from schemas.vocabulary import AGGREGATIONS, DIMENSIONS, FILTER_TYPES, GRANULARITIES, aggregation_output
from tests.support.golden import cases
from tests.support.ids import ORG, OTHER_ORG, UNKNOWN_ORG
from tests.unit.web import QUERY, StubBackend, Web, make_web, url


@pytest.fixture
def web(tmp_path: Path) -> Web:
    return make_web(tmp_path)


@pytest.fixture
def spec(web: Web) -> dict[str, Any]:
    response = web.client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json)


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> OAS31Validator:
    return OAS31Validator({**schema, "components": spec["components"]})


def _errors(spec: dict[str, Any], schema: dict[str, Any], instance: Any) -> list[str]:
    return [error.message for error in _validator(spec, schema).iter_errors(instance)]


def _component(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    validate_spec(spec)
    assert spec["openapi"] == "3.1.0"
    assert spec["components"]["securitySchemes"].keys() == {"Token", "Bearer"}
    assert spec["paths"].keys() == {QUERY_PATH, META_PATH, "/healthz", "/readyz", "/metrics", "/openapi.json"}


@pytest.mark.parametrize("case", cases("druid") + cases("sql"))
def test_every_golden_request_matches_the_query_schema(spec: dict[str, Any], case: dict[str, Any]) -> None:
    assert _errors(spec, _component("VisitorSessionsQuery"), case["request"]) == []


@pytest.mark.parametrize(
    ("filters", "valid"),
    [
        ({"type": "selector", "dimension": "city", "value": None}, True),
        ([{"type": "in", "dimension": "city", "values": ["a", 1, None]}], True),
        (
            {
                "type": "not",
                "field": {"type": "or", "fields": [{"type": "like", "dimension": "city", "pattern": "H%"}]},
            },
            True,
        ),
        ({"type": "search", "dimension": "city", "query": {"type": "contains", "value": "x"}}, True),
        (None, True),
        ({"type": "selector", "dimension": "city"}, False),
        ({"type": "selector", "dimension": "planet", "value": "x"}, False),
        ({"type": "selector", "dimension": "city", "value": True}, False),
        ({"type": "xor", "fields": []}, False),
        ({"type": "and", "fields": []}, False),
        ({"type": "not", "field": {"type": "regex", "dimension": "city"}}, False),
        ({"type": "bound", "dimension": "city", "lower": "a", "extra": 1}, False),
        ("city = 'x'", False),
    ],
)
def test_the_filter_tree_is_described_exactly(spec: dict[str, Any], filters: Any, valid: bool) -> None:
    payload = {**QUERY, "filters": filters}
    assert (_errors(spec, _component("VisitorSessionsQuery"), payload) == []) is valid


def _response_schema(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    documented = spec["paths"][path][method]["responses"]
    assert str(status) in documented, f"{method.upper()} {path} does not document {status}"
    return dict(documented[str(status)]["content"]["application/json"]["schema"])


# request kind → (status, settings overrides, backend error)
_QUERY_RESPONSES: dict[str, tuple[int, dict[str, Any], BaseException | None]] = {
    "ok": (200, {}, None),
    "explain": (200, {}, None),
    "invalid": (400, {}, None),
    "no_credentials": (401, {}, None),
    "other_org": (403, {}, None),
    "unknown_org": (404, {}, None),
    "wrong_method": (405, {}, None),
    "too_large": (413, {"max_body_bytes": 64}, None),
    "not_json": (415, {}, None),
    "rate_limited": (429, {"rate_limit_per_org_per_min": 1}, None),
    "bug": (500, {}, RuntimeError("bug")),
    "backend_error": (502, {}, BackendError("bad")),
    "unavailable": (503, {}, BackendUnavailable("down")),
    "timeout": (504, {}, BackendTimeout("slow")),
}


def _send(web: Web, kind: str) -> Any:
    client, auth = web.client, web.auth("a")
    if kind == "rate_limited":
        client.post(url(), json=QUERY, headers=auth)
    requests = {
        "explain": lambda: client.post(url(suffix="?explain=true"), json=QUERY, headers=auth),
        "invalid": lambda: client.post(url(), json={"granularity": "year"}, headers=auth),
        "no_credentials": lambda: client.post(url(), json=QUERY),
        "other_org": lambda: client.post(url(OTHER_ORG), json=QUERY, headers=auth),
        "unknown_org": lambda: client.post(url(UNKNOWN_ORG), json=QUERY, headers=auth),
        "wrong_method": lambda: client.put(url(), json=QUERY, headers=auth),
        "not_json": lambda: client.post(url(), data="x", headers=auth),
    }
    return requests.get(kind, lambda: client.post(url(), json=QUERY, headers=auth))()


@pytest.mark.parametrize("kind", list(_QUERY_RESPONSES))
def test_every_query_answer_is_documented(tmp_path: Path, kind: str) -> None:
    status, overrides, error = _QUERY_RESPONSES[kind]
    web = make_web(tmp_path, StubBackend(name="embedded", error=error), **overrides)
    spec = web.client.get("/openapi.json").json
    response = _send(web, kind)
    assert response.status_code == status
    assert _errors(spec, _response_schema(spec, QUERY_PATH, "post", status), response.json) == []


def test_documented_statuses_are_the_ones_answered() -> None:
    assert sorted({status for status, _, _ in _QUERY_RESPONSES.values()}) == [200, *QUERY_ERRORS]


@pytest.mark.parametrize(
    ("who", "org", "status"),
    [
        ("a", ORG, 200),
        ("jwt", OTHER_ORG, 200),
        (None, ORG, 401),
        ("other", ORG, 403),
        ("jwt_other", ORG, 403),
        ("a", UNKNOWN_ORG, 404),
        ("a", "not-a-uuid", 404),
    ],
)
def test_meta_has_the_query_access_checks(
    web: Web, spec: dict[str, Any], who: str | None, org: str, status: int
) -> None:
    response = web.client.get(url(org, "/meta"), headers=web.auth(who) if who else {})
    assert response.status_code == status
    assert status == 200 or status in META_ERRORS
    assert _errors(spec, _response_schema(spec, META_PATH, "get", status), response.json) == []


def test_meta_lists_the_vocabulary(web: Web) -> None:
    meta = web.client.get(url(suffix="/meta"), headers=web.auth("a")).json
    assert {d["name"]: d["kind"] for d in meta["dimensions"]} == {
        name: kind.value for name, kind in DIMENSIONS.items()
    }
    assert meta["filter_types"] == list(FILTER_TYPES)
    assert meta["granularities"] == list(GRANULARITIES)
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
