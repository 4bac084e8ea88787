"""`GET /openapi.json`: the OpenAPI 3.1 document, built from the same vocabulary and caps the
validator uses (schemas/json_schema.py), with the deployment's limits.

Error statuses and codes come from the `ProxyError` tree, werkzeug's routing errors and the
refusals the nginx front answers itself. Every error is the one `Error` schema; a response
narrows its `code` with a keyword beside the `$ref`, which validators apply and client
generators read as that one schema, so a generated client has one error class.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from proxy.errors import ProxyError
from proxy.service.representation import CSV
from proxy.settings import Settings
from proxy.web.meta import META_SCHEMA
from schemas.json_schema import CROSS_FIELD_RULES, ref, request_components

QUERY_PATH = "/api/reporting/v1/orgs/{organization_id}/visitor_sessions"
META_PATH = QUERY_PATH + "/meta"
EXPLANATION_TYPE = "application/vnd.reporting-proxy.explanation+json"

# Refusals werkzeug answers before a view runs.
_ROUTING_ERRORS: dict[int, tuple[str, ...]] = {
    404: ("not_found",),
    405: ("method_not_allowed",),
    413: ("request_entity_too_large",),
}
# Refusals the nginx front answers itself (proxyctl/front/config.py FRONT_ERRORS), on every path.
FRONT_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("bad_request",),
    404: ("not_found",),
    405: ("method_not_allowed",),
    413: ("request_entity_too_large",),
    414: ("request_uri_too_large",),
    431: ("request_header_fields_too_large",),
    500: ("internal_error",),
    502: ("bad_gateway",),
    504: ("gateway_timeout",),
}
# Codes one operation alone answers, documented there: the readiness probe, the CORS preflight,
# and the hang-up nobody reads.
_NOT_FROM_QUERIES = frozenset({"not_ready", "origin_not_allowed", "client_closed_request"})
# What `.../meta` answers beyond the front's refusals: the access checks, and a bug.
_META_CODES = frozenset(
    {
        "not_authenticated",
        "forbidden",
        "not_found",
        "organization_not_found",
        "access_store_unavailable",
        "internal_error",
    }
)


def _tree_codes() -> dict[str, int]:
    """Every `ProxyError` code → its status."""
    codes: dict[str, int] = {}
    pending: list[type[ProxyError]] = [ProxyError]
    while pending:
        cls = pending.pop()
        codes[cls.code] = cls.status
        pending.extend(cls.__subclasses__())
    return codes


def _table(*sources: dict[int, tuple[str, ...]]) -> dict[int, set[str]]:
    table: dict[int, set[str]] = {}
    for source in sources:
        for status, codes in source.items():
            table.setdefault(status, set()).update(codes)
    return table


def error_codes(codes: frozenset[str] | None = None) -> dict[int, list[str]]:
    """Status → the codes a query (or, given `codes`, an operation answering those) uses for it."""
    tree: dict[int, tuple[str, ...]] = {}
    for code, status in _tree_codes().items():
        if code not in _NOT_FROM_QUERIES and (codes is None or code in codes):
            tree[status] = (*tree.get(status, ()), code)
    table = _table(tree, _ROUTING_ERRORS, FRONT_ERRORS)
    return {status: sorted(found) for status, found in sorted(table.items())}


def all_codes() -> list[str]:
    """Every code an error body may carry, on any path."""
    return sorted({*_tree_codes(), *(code for codes in FRONT_ERRORS.values() for code in codes)})


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


_REQUEST_ID = _header(
    "The request id: the caller's `X-Request-Id` when it is 1–64 of `A-Za-z0-9._-` (and does not look "
    "like an API key), else a new UUID."
)
_RETRY_AFTER = {"Retry-After": _header("Seconds to wait before trying again.")}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": _header("The accepted schemes: Token and Bearer.")},
    405: {"Allow": _header("The methods the path takes.")},
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}


def _error_response(status: int, codes: list[str]) -> dict[str, Any]:
    return {
        "description": "Codes: " + ", ".join(codes),
        "headers": {"X-Request-Id": _REQUEST_ID, **_ERROR_HEADERS.get(status, {})},
        "content": {
            "application/json": {"schema": {**ref("Error"), "properties": {"code": {"enum": codes}}}}
        },
    }


def _errors(table: dict[int, list[str]]) -> dict[str, Any]:
    return {str(status): _error_response(status, codes) for status, codes in table.items()}


def _json_response(description: str, schema: dict[str, Any], **headers: Any) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-Id": _REQUEST_ID, **headers},
        "content": {"application/json": {"schema": schema}},
    }


_SECURITY: list[dict[str, list[str]]] = [{"Token": []}, {"Bearer": []}]
_ORGANIZATION = {"name": "organization_id", "in": "path", "required": True, "schema": {"type": "string"}}
_REQUEST_ID_PARAMETER = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Echoed back when 1–64 of `A-Za-z0-9._-`; any other value is replaced by a new UUID.",
}
_EXPLAIN = {
    "name": "explain",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "`true`: validate and authorize, run nothing, answer the backend query as the "
    f"`{EXPLANATION_TYPE}` media type. `true` or `false` only, given once: anything else is a 400.",
}
_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "The ETag of an answer the caller holds: a 304 while it is current (result cache on).",
}
_CACHE_HEADERS = {
    "ETag": _header("The answer's version in this form (JSON and CSV differ), with the result cache on."),
    "X-Cache": _header("What the result cache did: hit, miss, revalidated."),
    "Cache-Control": _header("`private, no-cache` on an answer with an ETag."),
}
_REPORT_HEADERS = {**_CACHE_HEADERS, "Vary": _header("`Accept, Origin`: the form follows `Accept`.")}
_CSV = {
    "schema": {
        "type": "string",
        "description": "With `Accept: text/csv` (UTF-8, RFC 4180): a line of the field names, then the "
        "rows of `data`; null an empty field, numbers and timestamps as in JSON. A query with "
        "`totals` or `compare` is a 406.",
    }
}


def _rules_description() -> str:
    rules = "\n".join(f"- `{path}`: {rule}" for path, rule in CROSS_FIELD_RULES.items())
    return (
        "Every rule JSON Schema can state is in the request schema. These it cannot state; a request "
        "that breaks one is a 400 naming the field (`GET .../meta` lists them too):\n\n" + rules
    )


def _query_operation() -> dict[str, Any]:
    ok = _json_response(
        "The result: a `Result`, or as CSV when `Accept` prefers it.", ref("Result"), **_REPORT_HEADERS
    )
    ok["content"][CSV.media_type] = _CSV
    ok["content"][EXPLANATION_TYPE] = {"schema": ref("Explanation")}
    return {
        "summary": "Count, average and estimate unique visitor sessions of one organization.",
        "description": _rules_description(),
        "operationId": "queryVisitorSessions",
        "security": _SECURITY,
        "parameters": [_ORGANIZATION, _REQUEST_ID_PARAMETER, _IF_NONE_MATCH, _EXPLAIN],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref("VisitorSessionsQuery")}},
        },
        "responses": {
            "200": ok,
            "304": {
                "description": "The caller's copy (If-None-Match) is current.",
                "headers": _REPORT_HEADERS,
            },
            **_errors(error_codes()),
        },
    }


def _meta_operation() -> dict[str, Any]:
    return {
        "summary": "The dimensions, aggregations, filters, granularities, rules and limits of a query.",
        "operationId": "describeVisitorSessions",
        "security": _SECURITY,
        "parameters": [_ORGANIZATION, _REQUEST_ID_PARAMETER],
        "responses": {
            "200": _json_response("The vocabulary and limits.", ref("Meta")),
            **_errors(error_codes(_META_CODES)),
        },
    }


def _preflight(operation_id: str, method: str) -> dict[str, Any]:
    """OPTIONS on an API path: the CORS preflight of a browser asking to send `method`."""
    headers = {
        name: _header(description)
        for name, description in {
            "Access-Control-Allow-Origin": "The caller's origin, when listed in PROXY_CORS_ORIGINS.",
            "Access-Control-Allow-Methods": "The methods the path takes.",
            "Access-Control-Allow-Headers": "The request headers a browser may send.",
            "Access-Control-Max-Age": "Seconds a browser may reuse this answer.",
        }.items()
    }
    preflight = {
        "Origin": {"type": "string", "minLength": 1},
        "Access-Control-Request-Method": {"enum": [method]},
    }
    return {
        "summary": "The CORS preflight of a browser frontend (docs/console.md); any other OPTIONS is a 405.",
        "operationId": operation_id,
        "security": [],
        "parameters": [
            _ORGANIZATION,
            *(
                {"name": name, "in": "header", "required": True, "schema": schema}
                for name, schema in preflight.items()
            ),
        ],
        "responses": {
            "204": {"description": "A preflight from a listed origin.", "headers": headers},
            "403": _error_response(403, ["origin_not_allowed"]),
            "405": _error_response(405, ["method_not_allowed"]),
        },
    }


def _plain_operation(summary: str, ok: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"get": {"summary": summary, "security": [], "responses": {"200": ok, **(extra or {})}}}


def _service_paths() -> dict[str, dict[str, Any]]:
    status = {"type": "object", "additionalProperties": True}
    text = {
        "description": "Prometheus text exposition.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    spec = {"description": "This document.", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "/healthz": _plain_operation("The process is up.", _json_response("Up.", status)),
        "/readyz": _plain_operation(
            "The backend answers.",
            _json_response("Ready.", status),
            {"503": _error_response(503, ["not_ready"])},
        ),
        "/metrics": _plain_operation("Prometheus metrics, summed across workers.", text),
        "/openapi.json": _plain_operation("This OpenAPI document.", spec),
    }


_TOKEN_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "Authorization",
    "description": "`Authorization: Token rpk_<key id>_<secret>`, an API key from `reporting-proxy tokens create`.",
}


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document of the service, with this deployment's caps."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "reporting-proxy", "version": version("reporting-proxy")},
        "paths": {
            QUERY_PATH: {
                "post": _query_operation(),
                "options": _preflight("preflightVisitorSessions", "POST"),
            },
            META_PATH: {
                "get": _meta_operation(),
                "options": _preflight("preflightVisitorSessionsMeta", "GET"),
            },
            **_service_paths(),
        },
        "components": {
            "schemas": {**request_components(settings), **_response_components()},
            "securitySchemes": {
                "Token": _TOKEN_SCHEME,
                "Bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }


def _response_components() -> dict[str, dict[str, Any]]:
    return {
        "Error": {
            "type": "object",
            "required": ["detail", "code"],
            "properties": {
                "detail": {"type": "string"},
                "code": {"enum": all_codes()},
                "errors": {
                    "type": "object",
                    "description": "Field path (`interval.end`, `aggregations.0.fields`) → messages.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            "additionalProperties": False,
        },
        "Result": _RESULT,
        "Explanation": {
            "type": "object",
            "required": ["backend", "query"],
            "properties": {
                "backend": {"enum": ["druid", "embedded"]},
                "query": {"description": "The native Druid query, or the SQL and its parameters."},
                "comparison_query": {"description": "With `compare`: the query over the other interval."},
                "totals_query": {"description": "With `totals`: the one query for every interval's totals."},
            },
            "additionalProperties": False,
        },
        "Meta": META_SCHEMA,
    }


_CELL = {
    "anyOf": [
        {"type": "string", "description": "The bucket's timestamp, or a string dimension's value."},
        {"type": "integer", "description": "A count, or a numeric dimension's value."},
        {"type": "number", "description": "An avg (null without sessions) or a hyperUnique estimate."},
        {"type": "null", "description": "A missing dimension value, or the avg of no sessions."},
    ]
}
_FIELDS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name", "type"],
        "properties": {"name": {"type": "string"}, "type": {"enum": ["dimension", "metric"]}},
        "additionalProperties": False,
    },
}
_DATA = {"type": "array", "items": {"type": "array", "items": _CELL}}
_TOTALS = {
    "type": "array",
    "items": _CELL,
    "description": "With `totals`: each metric, in metric order, over every session matching the "
    "interval and filters (limit and offset do not change them).",
}
_RESULT = {
    "type": "object",
    "required": ["fields", "data"],
    "description": "Columns: timestamp, the group_by dimensions, the aggregation outputs. Cells: "
    "`count` an integer, `hyperUnique` a number, `avg` a number or null.",
    "properties": {
        "fields": _FIELDS,
        "data": _DATA,
        "totals": _TOTALS,
        "comparison": {
            "type": "object",
            "required": ["interval", "fields", "data"],
            "description": "The same query over the `compare` interval.",
            "properties": {
                "interval": {
                    "type": "object",
                    "required": ["start", "end", "time_zone"],
                    "properties": {
                        "start": {"type": "string", "description": "In the zone's offset."},
                        "end": {"type": "string", "description": "In the zone's offset."},
                        "time_zone": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
                "fields": _FIELDS,
                "data": _DATA,
                "totals": _TOTALS,
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
