"""`/openapi.json` is valid OpenAPI 3.1 and as precise as the validator: a request the schema
accepts, the server accepts (save the documented cross-field rules), and every answer the server
gives is documented (issue 14)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from marshmallow import ValidationError
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from proxy.errors import BackendError, BackendTimeout, BackendUnavailable
from proxy.web.openapi import EXPLANATION_TYPE, FRONT_ERRORS, META_PATH, QUERY_PATH, error_codes
from proxyctl.front.config import FRONT_ERRORS as NGINX_ERRORS
from schemas.request import QuerySchema
from tests.support.golden import cases
from tests.support.ids import ORG, OTHER_ORG, UNKNOWN_ORG
from tests.unit.web import QUERY, StubBackend, Web, make_web, url

ROOT = Path(__file__).parents[2]


@pytest.fixture
def web(tmp_path: Path) -> Web:
    return make_web(tmp_path)


@pytest.fixture
def spec(web: Web) -> dict[str, Any]:
    response = web.client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json)


def _errors(spec: dict[str, Any], schema: dict[str, Any], instance: Any) -> list[str]:
    validator = OAS31Validator({**schema, "components": spec["components"]})
    return [error.message for error in validator.iter_errors(instance)]


_QUERY_SCHEMA = {"$ref": "#/components/schemas/VisitorSessionsQuery"}


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    validate_spec(spec)
    assert spec["openapi"] == "3.1.0"
    assert spec["components"]["securitySchemes"].keys() == {"Token", "Bearer"}
    assert spec["paths"].keys() == {QUERY_PATH, META_PATH, "/healthz", "/readyz", "/metrics", "/openapi.json"}


@pytest.mark.parametrize("case", cases("druid") + cases("sql"))
def test_every_golden_request_matches_the_query_schema(spec: dict[str, Any], case: dict[str, Any]) -> None:
    assert _errors(spec, _QUERY_SCHEMA, case["request"]) == []


def _accepted(payload: dict[str, Any]) -> bool:
    try:
        QuerySchema().load(payload)
    except ValidationError:
        return False
    return True


NUMERIC = "session_duration_secs"
# A change to the reference query → whether it is valid. Schema and server must agree on each:
# every rule here is one JSON Schema states (issue 14, points 1 and 3).
AGREEMENT: list[tuple[str, dict[str, Any], bool]] = [
    ("count", {}, True),
    ("avg_field", {"aggregations": [{"type": "avg", "fields": [NUMERIC]}]}, True),
    ("avg_wrong_field", {"aggregations": [{"type": "avg", "fields": ["city"]}]}, False),
    ("avg_no_fields", {"aggregations": [{"type": "avg"}]}, False),
    ("avg_repeated_field", {"aggregations": [{"type": "avg", "fields": [NUMERIC, NUMERIC]}]}, False),
    ("hyper_unique_on_session", {"aggregations": [{"type": "hyperUnique", "fields": ["session_id"]}]}, True),
    ("no_aggregations", {"aggregations": []}, False),
    ("too_many_aggregations", {"aggregations": [{"type": "count"}] * 21}, False),
    ("unknown_granularity", {"granularity": "decade"}, False),
    ("unknown_zone", {"interval": {**QUERY["interval"], "time_zone": "Mars/Base"}}, False),
    ("zone", {"interval": {**QUERY["interval"], "time_zone": "Asia/Kathmandu"}}, True),
    ("group_by", {"group_by": ["city", "rooms"]}, True),
    ("group_by_repeated", {"group_by": ["city", "city"]}, False),
    (
        "group_by_too_many",
        {"group_by": ["city", "country", "os_name", "rooms", "visitor_id", "session_id"]},
        False,
    ),
    ("group_by_unknown", {"group_by": ["planet"]}, False),
    ("limit", {"group_by": ["city"], "limit": 5}, True),
    ("limit_integral_float", {"group_by": ["city"], "limit": 5.0}, True),
    ("limit_fraction", {"group_by": ["city"], "limit": 5.5}, False),
    ("limit_text", {"group_by": ["city"], "limit": "5"}, False),
    ("limit_boolean", {"group_by": ["city"], "limit": True}, False),
    ("limit_over_rows", {"group_by": ["city"], "limit": 100_001}, False),
    ("limit_without_group_by", {"limit": 5}, False),
    ("order_by_without_group_by", {"order_by": [{"field": "count"}]}, False),
    ("empty_order_by_without_group_by", {"order_by": []}, True),
    (
        "order_by_direction",
        {"group_by": ["city"], "order_by": [{"field": "count", "direction": "up"}]},
        False,
    ),
    ("order_by_unknown_column", {"group_by": ["city"], "order_by": [{"field": "planet"}]}, False),
    ("unknown_key", {"colour": "blue"}, False),
    ("totals", {"totals": True}, True),
    ("totals_text", {"totals": "true"}, False),
    ("totals_number", {"totals": 1}, False),
    ("compare_previous_period", {"compare": "previous_period"}, True),
    ("compare_previous_year", {"compare": "previous_year"}, True),
    ("compare_unknown_period", {"compare": "previous_week"}, False),
    ("compare_interval", {"compare": {"start": "2018-12-01T00:00:00Z", "end": "2018-12-02T00:00:00Z"}}, True),
    (
        "compare_interval_with_zone",
        {"compare": {"start": "2018-12-01T00:00:00Z", "end": "2018-12-02T00:00:00Z", "time_zone": "UTC"}},
        False,
    ),
    ("compare_interval_without_end", {"compare": {"start": "2018-12-01T00:00:00Z"}}, False),
    ("compare_null", {"compare": None}, False),
    ("offset", {"group_by": ["city"], "limit": 5, "offset": 10}, True),
    ("offset_zero", {"group_by": ["city"], "limit": 5, "offset": 0}, True),
    ("offset_negative", {"group_by": ["city"], "limit": 5, "offset": -1}, False),
    ("offset_fraction", {"group_by": ["city"], "limit": 5, "offset": 1.5}, False),
    ("offset_over_rows", {"group_by": ["city"], "limit": 1, "offset": 100_000}, False),
]
FILTERS: list[tuple[str, Any, bool]] = [
    ("selector_null", {"type": "selector", "dimension": "city", "value": None}, True),
    ("in_mixed", [{"type": "in", "dimension": "city", "values": ["a", 1, None]}], True),
    ("in_empty", {"type": "in", "dimension": "city", "values": []}, False),
    (
        "nested",
        {
            "type": "not",
            "field": {"type": "or", "fields": [{"type": "like", "dimension": "city", "pattern": "H%"}]},
        },
        True,
    ),
    ("search", {"type": "search", "dimension": "city", "query": {"type": "contains", "value": "x"}}, True),
    (
        "search_empty",
        {"type": "search", "dimension": "city", "query": {"type": "contains", "value": ""}},
        False,
    ),
    (
        "search_on_numeric",
        {"type": "search", "dimension": NUMERIC, "query": {"type": "contains", "value": "1"}},
        False,
    ),
    ("none", None, True),
    ("empty_list", [], True),
    ("selector_without_value", {"type": "selector", "dimension": "city"}, False),
    ("selector_unknown_dimension", {"type": "selector", "dimension": "planet", "value": "x"}, False),
    ("selector_boolean", {"type": "selector", "dimension": "city", "value": True}, False),
    ("selector_long_text", {"type": "selector", "dimension": "city", "value": "x" * 1001}, False),
    ("selector_beyond_64_bits", {"type": "selector", "dimension": "city", "value": 2**63}, False),
    ("selector_float_beyond_64_bits", {"type": "selector", "dimension": "city", "value": 1e300}, False),
    ("selector_numeric_text", {"type": "selector", "dimension": NUMERIC, "value": "12.5"}, True),
    ("selector_text_on_numeric", {"type": "selector", "dimension": NUMERIC, "value": "abc"}, False),
    ("in_text_on_numeric", {"type": "in", "dimension": NUMERIC, "values": [1, "abc"]}, False),
    ("xor", {"type": "xor", "fields": []}, False),
    ("empty_and", {"type": "and", "fields": []}, False),
    ("not_of_incomplete", {"type": "not", "field": {"type": "regex", "dimension": "city"}}, False),
    ("bound_extra_key", {"type": "bound", "dimension": "city", "lower": "a", "extra": 1}, False),
    ("bound_no_bounds", {"type": "bound", "dimension": "city"}, False),
    ("bound_null_lower", {"type": "bound", "dimension": "city", "lower": None, "upper": "b"}, False),
    ("bound_strict", {"type": "bound", "dimension": "city", "lower": "a", "lowerStrict": True}, True),
    ("bound_strict_one", {"type": "bound", "dimension": "city", "lower": "a", "lowerStrict": 1}, False),
    ("bound_strict_zero", {"type": "bound", "dimension": "city", "upper": "a", "upperStrict": 0.0}, False),
    (
        "bound_numeric_on_text",
        {"type": "bound", "dimension": "city", "lower": 1, "ordering": "numeric"},
        False,
    ),
    ("bound_numeric_default", {"type": "bound", "dimension": NUMERIC, "lower": "10"}, True),
    ("bound_numeric_text_bound", {"type": "bound", "dimension": NUMERIC, "lower": "abc"}, False),
    (
        "bound_lexicographic_numeric",
        {"type": "bound", "dimension": NUMERIC, "lower": "abc", "ordering": "lexicographic"},
        True,
    ),
    ("regex_on_numeric", {"type": "regex", "dimension": NUMERIC, "pattern": "1"}, False),
    ("regex_empty", {"type": "regex", "dimension": "city", "pattern": ""}, False),
    ("regex_long", {"type": "regex", "dimension": "city", "pattern": "a" * 501}, False),
    ("like_lone_escape", {"type": "like", "dimension": "city", "pattern": "a\\"}, False),
    ("like_escaped_escape", {"type": "like", "dimension": "city", "pattern": "a\\\\"}, True),
    ("like_escaped_percent", {"type": "like", "dimension": "city", "pattern": "50\\%"}, True),
    ("text", "city = 'x'", False),
]
_CASES = [(name, change) for name, change, _ in AGREEMENT] + [
    (f"filter_{name}", {"filters": filters}) for name, filters, _ in FILTERS
]
_VALID = [valid for _, _, valid in AGREEMENT] + [valid for _, _, valid in FILTERS]


@pytest.mark.parametrize(
    ("change", "valid"), [(c, v) for (_, c), v in zip(_CASES, _VALID)], ids=[n for n, _ in _CASES]
)
def test_schema_and_validator_agree(spec: dict[str, Any], change: dict[str, Any], valid: bool) -> None:
    payload = {**QUERY, **change}
    assert (_errors(spec, _QUERY_SCHEMA, payload) == []) is valid
    assert _accepted(payload) is valid


def test_cross_field_rules_are_described_and_in_meta(web: Web, spec: dict[str, Any]) -> None:
    description = spec["paths"][QUERY_PATH]["post"]["description"]
    rules = web.client.get(url(suffix="/meta"), headers=web.auth("a")).json["rules"]
    assert {"interval.end", "interval", "granularity", "aggregations", "order_by", "filters"} <= rules.keys()
    assert all(f"`{path}`: {rule}" in description for path, rule in rules.items())


def _response_schema(spec: dict[str, Any], path: str, method: str, status: int, media: str) -> dict[str, Any]:
    documented = spec["paths"][path][method]["responses"]
    assert str(status) in documented, f"{method.upper()} {path} does not document {status}"
    return dict(documented[str(status)]["content"][media]["schema"])


# request kind → (status, settings overrides, backend error)
_QUERY_RESPONSES: dict[str, tuple[int, dict[str, Any], BaseException | None]] = {
    "ok": (200, {}, None),
    "explain": (200, {}, None),
    "totals_and_comparison": (200, {}, None),
    "csv": (200, {}, None),
    "invalid": (400, {}, None),
    "no_credentials": (401, {}, None),
    "other_org": (403, {}, None),
    "unknown_org": (404, {}, None),
    "wrong_method": (405, {}, None),
    "not_acceptable": (406, {}, None),
    "options": (405, {}, None),
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
        "totals_and_comparison": lambda: client.post(
            url(), json={**QUERY, "totals": True, "compare": "previous_period"}, headers=auth
        ),
        "csv": lambda: client.post(url(), json=QUERY, headers={**auth, "Accept": "text/csv"}),
        "not_acceptable": lambda: client.post(
            url(), json={**QUERY, "totals": True}, headers={**auth, "Accept": "text/csv"}
        ),
        "invalid": lambda: client.post(url(), json={"granularity": "year"}, headers=auth),
        "no_credentials": lambda: client.post(url(), json=QUERY),
        "other_org": lambda: client.post(url(OTHER_ORG), json=QUERY, headers=auth),
        "unknown_org": lambda: client.post(url(UNKNOWN_ORG), json=QUERY, headers=auth),
        "wrong_method": lambda: client.put(url(), json=QUERY, headers=auth),
        "options": lambda: client.options(url(), headers=auth),
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
    method = "options" if kind == "options" else "post"
    schema = _response_schema(spec, QUERY_PATH, method, status, response.mimetype)
    body = response.json if response.is_json else response.get_data(as_text=True)
    assert _errors(spec, schema, body) == []


def test_an_explanation_has_its_own_media_type_so_a_json_answer_is_a_result(web: Web) -> None:
    plain = web.client.post(url(), json=QUERY, headers=web.auth("a"))
    explained = web.client.post(url(suffix="?explain=true"), json=QUERY, headers=web.auth("a"))
    assert (plain.mimetype, explained.mimetype) == ("application/json", EXPLANATION_TYPE)
    assert (set(plain.json), set(explained.json)) == ({"fields", "data"}, {"backend", "query"})


@pytest.mark.parametrize(
    ("query_string", "status", "explained"),
    [
        ("", 200, False),
        ("?explain=true", 200, True),
        ("?explain=false", 200, False),
        ("?explain=True", 400, False),
        ("?explain=TRUE", 400, False),
        ("?explain=1", 400, False),
        ("?explain=abc", 400, False),
        ("?explain=", 400, False),
        ("?explain=true&explain=false", 400, False),
        ("?explain=true&explain=true", 400, False),
    ],
)
def test_explain_is_a_strict_boolean(web: Web, query_string: str, status: int, explained: bool) -> None:
    response = web.client.post(url(suffix=query_string), json=QUERY, headers=web.auth("a"))
    assert response.status_code == status
    assert ("backend" in response.json) is explained
    if status == 400:
        assert response.json["errors"] == {"explain": ["Must be true or false."]}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Token rpk_unknown"}])
def test_a_bad_explain_from_a_stranger_is_refused_as_a_stranger(web: Web, headers: dict[str, str]) -> None:
    response = web.client.post(url(suffix="?explain=abc"), json=QUERY, headers=headers)
    assert (response.status_code, "explain" in response.json.get("errors", {})) == (401, False)


def test_a_bad_explain_counts_against_the_credentials_invalid_budget(tmp_path: Path) -> None:
    web = make_web(tmp_path, rate_limit_invalid_per_principal_per_min=2)
    statuses = [web.client.post(url(suffix="?explain=abc"), json=QUERY, headers=web.auth("a")).status_code]
    statuses += [web.client.post(url(suffix="?explain=abc"), json=QUERY, headers=web.auth("a")).status_code]
    statuses += [web.client.post(url(), json=QUERY, headers=web.auth("a")).status_code]
    assert statuses == [400, 400, 429]


def test_explain_is_documented_as_a_boolean(spec: dict[str, Any]) -> None:
    parameters = {p["name"]: p for p in spec["paths"][QUERY_PATH]["post"]["parameters"]}
    assert parameters["explain"]["schema"] == {"type": "boolean", "default": False}


@pytest.mark.parametrize(
    ("supplied", "echoed"),
    [("abc-1.2_3", True), ("has space", False), ("x" * 65, False), ("rpk_looks_like_a_key", False)],
)
def test_the_request_id_header_is_described_not_constrained(
    web: Web, spec: dict[str, Any], supplied: str, echoed: bool
) -> None:
    parameters = {p["name"]: p for p in spec["paths"][QUERY_PATH]["post"]["parameters"]}
    assert parameters["X-Request-Id"]["schema"] == {"type": "string"}
    response = web.client.post(url(), json=QUERY, headers={**web.auth("a"), "X-Request-Id": supplied})
    assert response.status_code == 200
    assert (response.headers["X-Request-Id"] == supplied) is echoed


def test_field_errors_are_flat_paths(web: Web) -> None:
    payload = {
        **QUERY,
        "interval": {"start": "2019-01-02T00:00:00Z", "end": "2019-01-01T00:00:00Z"},
    }
    response = web.client.post(url(), json=payload, headers=web.auth("a"))
    assert response.json["errors"] == {"interval.end": ["Must be after start."]}
    bad_field = {**QUERY, "aggregations": [{"type": "count"}, {"type": "avg", "fields": ["city"]}]}
    response = web.client.post(url(), json=bad_field, headers=web.auth("a"))
    assert list(response.json["errors"]) == ["aggregations.1.fields"]


def test_documented_statuses_are_the_ones_answered() -> None:
    answered = {status for status, _, _ in _QUERY_RESPONSES.values()}
    assert sorted(answered | set(FRONT_ERRORS)) == sorted(set(error_codes()) | {200})


def test_the_fronts_own_refusals_are_documented() -> None:
    assert {error.status: (error.code,) for error in NGINX_ERRORS.values()} == FRONT_ERRORS


def test_one_error_schema_narrowed_beside_its_reference(spec: dict[str, Any]) -> None:
    responses = spec["paths"][QUERY_PATH]["post"]["responses"]
    schemas = [responses[str(status)]["content"]["application/json"]["schema"] for status in error_codes()]
    assert {schema["$ref"] for schema in schemas} == {"#/components/schemas/Error"}
    assert all(set(schema) == {"$ref", "properties"} for schema in schemas)
    every_code = set(spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
    assert {code for codes in error_codes().values() for code in codes} <= every_code


def _table_codes(text: str, heading: str) -> dict[int, set[str]]:
    """The status → codes table under `heading` in a Markdown page (`a / b` columns paired)."""
    section = text.split(heading, 1)[1]
    table: dict[int, set[str]] = {}
    for line in re.findall(r"^\| ([0-9][0-9 /]*) \| ([^|]+) \|", section, re.MULTILINE):
        statuses, codes = line[0].split(" / "), line[1].split(" / ")
        for status, group in zip(
            statuses, codes if len(codes) == len(statuses) else [line[1]] * len(statuses)
        ):
            table.setdefault(int(status), set()).update(re.findall(r"`([a-z_]+)`", group))
    return table


def test_the_docs_list_the_documented_statuses_and_codes() -> None:
    documented = {status: set(codes) for status, codes in error_codes().items()}
    assert _table_codes((ROOT / "docs/api.md").read_text(), "## Errors") == {
        **documented,
        503: {*documented[503], "not_ready"},
    }


def test_cells_are_typed_per_aggregation(spec: dict[str, Any]) -> None:
    result = spec["components"]["schemas"]["Result"]
    cell_types = {branch["type"] for branch in result["properties"]["data"]["items"]["items"]["anyOf"]}
    assert cell_types == {"string", "integer", "number", "null"}
    assert (
        _errors(spec, {"$ref": "#/components/schemas/Result"}, {"fields": [], "data": [["t", 3, 1.5, None]]})
        == []
    )


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
    assert (
        _errors(spec, _response_schema(spec, META_PATH, "get", status, "application/json"), response.json)
        == []
    )
