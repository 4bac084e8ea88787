"""`GET /openapi.json`: an OpenAPI 3.1 document generated from the marshmallow schemas.

The request body comes from `QuerySchema` through apispec's MarshmallowPlugin; the recursive
filter tree, which marshmallow loads through a type → schema table, is described as a `oneOf`
over that same table. Error statuses and codes are read from the `ProxyError` tree.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from proxy.errors import NotReady, ProxyError
from schemas.filters import FILTER_SCHEMAS, FilterField, ScalarField
from schemas.request import FiltersField, QuerySchema
from schemas.vocabulary import DIMENSIONS, FILTER_TYPES, GRANULARITIES

QUERY_PATH = "/api/reporting/v1/orgs/{organization_id}/visitor_sessions"
META_PATH = QUERY_PATH + "/meta"
_FILTER_REF = {"$ref": "#/components/schemas/Filter"}
_FILTER_NAMES = {schema: name for name, schema in FILTER_SCHEMAS.items()}
# Errors werkzeug raises itself, before a view runs.
_ROUTING_ERRORS = {405: ("method_not_allowed",), 413: ("request_entity_too_large",), 404: ("not_found",)}
QUERY_ERRORS = (400, 401, 403, 404, 405, 413, 415, 429, 500, 502, 503, 504)
META_ERRORS = (401, 403, 404, 405, 500)


def _filter_property(self: Any, field: fields.Field, **kwargs: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    """What apispec cannot infer for the custom fields of the filter tree."""
    if isinstance(field, FilterField):
        return dict(_FILTER_REF)
    if isinstance(field, FiltersField):
        return {"anyOf": [_FILTER_REF, {"type": "array", "items": _FILTER_REF}, {"type": "null"}]}
    if isinstance(field, ScalarField):
        return {"type": ["string", "number", "null"] if field.allow_none else ["string", "number"]}
    name = _FILTER_NAMES.get(type(field.parent)) if field.name == "type" else None  # type: ignore[arg-type]
    return {"enum": [name]} if name else {}


def error_codes() -> dict[int, list[str]]:
    """Every status the query endpoints answer errors with → the codes they use for it."""
    table: dict[int, set[str]] = {status: set(codes) for status, codes in _ROUTING_ERRORS.items()}
    pending: list[type[ProxyError]] = [ProxyError]
    while pending:
        cls = pending.pop()
        # Only the readiness probe answers `not_ready`; its own path documents it.
        if cls is not NotReady:
            table.setdefault(cls.status, set()).add(cls.code)
        pending.extend(cls.__subclasses__())
    return {status: sorted(codes) for status, codes in sorted(table.items())}


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


_REQUEST_ID_HEADER = {
    "X-Request-Id": _header("The request id: the caller's if well-formed, else a new UUID.")
}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": _header("The accepted schemes: Token and Bearer.")},
    429: {"Retry-After": _header("Seconds to wait before trying again.")},
    503: {"Retry-After": _header("Seconds to wait before trying again.")},
}


def _error_response(status: int, codes: list[str]) -> dict[str, Any]:
    schema = {"allOf": [{"$ref": "#/components/schemas/Error"}, {"properties": {"code": {"enum": codes}}}]}
    return {
        "description": "Codes: " + ", ".join(codes),
        "headers": {**_REQUEST_ID_HEADER, **_ERROR_HEADERS.get(status, {})},
        "content": {"application/json": {"schema": schema}},
    }


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _REQUEST_ID_HEADER,
        "content": {"application/json": {"schema": schema}},
    }


def _responses(ok: dict[str, Any], statuses: tuple[int, ...]) -> dict[str, Any]:
    codes = error_codes()
    return {"200": ok, **{str(status): _error_response(status, codes[status]) for status in statuses}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_SECURITY: list[dict[str, list[str]]] = [{"Token": []}, {"Bearer": []}]


def _parameters(request_id_pattern: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "organization_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        },
        {
            "name": "X-Request-Id",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": request_id_pattern},
        },
    ]


def _query_operation(request_id_pattern: str) -> dict[str, Any]:
    explain = {
        "name": "explain",
        "in": "query",
        "required": False,
        "schema": {"type": "boolean"},
        "description": "`true`: validate and authorize, run nothing, answer the backend query.",
    }
    ok = _json_response(
        "The result, or with explain=true the backend query.",
        {"oneOf": [_ref("Result"), _ref("Explanation")]},
    )
    return {
        "summary": "Count, average and estimate unique visitor sessions of one organization.",
        "operationId": "queryVisitorSessions",
        "security": _SECURITY,
        "parameters": [*_parameters(request_id_pattern), explain],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("VisitorSessionsQuery")}},
        },
        "responses": _responses(ok, QUERY_ERRORS),
    }


def _meta_operation(request_id_pattern: str) -> dict[str, Any]:
    return {
        "summary": "The dimensions, aggregations, filters, granularities and limits a query may use.",
        "operationId": "describeVisitorSessions",
        "security": _SECURITY,
        "parameters": _parameters(request_id_pattern),
        "responses": _responses(_json_response("The vocabulary and limits.", _ref("Meta")), META_ERRORS),
    }


def _plain_operation(
    summary: str, ok: dict[str, Any], errors: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"get": {"summary": summary, "security": [], "responses": {"200": ok, **(errors or {})}}}


def _service_paths() -> dict[str, dict[str, Any]]:
    status = {"type": "object", "additionalProperties": True}
    not_ready = _error_response(NotReady.status, [NotReady.code])
    text = {
        "description": "Prometheus text exposition.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    spec = {"description": "This document.", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "/healthz": _plain_operation("The process is up.", _json_response("Up.", status)),
        "/readyz": _plain_operation(
            "The backend answers.", _json_response("Ready.", status), {"503": not_ready}
        ),
        "/metrics": _plain_operation("Prometheus metrics, summed across workers.", text),
        "/openapi.json": _plain_operation("This OpenAPI document.", spec),
    }


def openapi_document(request_id_pattern: str) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document of the service."""
    plugin = MarshmallowPlugin()
    spec = APISpec("reporting-proxy", version("reporting-proxy"), "3.1.0", plugins=[plugin])
    plugin.converter.add_attribute_function(_filter_property)  # type: ignore[union-attr]
    for name, schema in FILTER_SCHEMAS.items():
        spec.components.schema(f"{name.title()}Filter", schema=schema)
    spec.components.schema("Filter", _filter_union())
    spec.components.schema("VisitorSessionsQuery", schema=QuerySchema)
    for name, component in _RESPONSE_SCHEMAS.items():
        spec.components.schema(name, component)
    spec.components.security_scheme("Token", _TOKEN_SCHEME)
    spec.components.security_scheme("Bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.path(QUERY_PATH, operations={"post": _query_operation(request_id_pattern)})
    spec.path(META_PATH, operations={"get": _meta_operation(request_id_pattern)})
    for path, operations in _service_paths().items():
        spec.path(path, operations=operations)
    return spec.to_dict()


def _filter_union() -> dict[str, Any]:
    refs = {name: f"#/components/schemas/{name.title()}Filter" for name in FILTER_TYPES}
    return {
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "type", "mapping": refs},
    }


_TOKEN_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "Authorization",
    "description": "`Authorization: Token rpk_<key id>_<secret>`, an API key from `reporting-proxy tokens create`.",
}
_SCALAR = {"type": ["string", "number", "null"]}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["detail", "code"],
        "properties": {
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "errors": {"type": "object", "description": "Field path → messages."},
        },
        "additionalProperties": False,
    },
    "Result": {
        "type": "object",
        "required": ["fields", "data"],
        "properties": {
            "fields": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "type"],
                    "properties": {"name": {"type": "string"}, "type": {"enum": ["dimension", "metric"]}},
                    "additionalProperties": False,
                },
            },
            "data": {"type": "array", "items": {"type": "array", "items": _SCALAR}},
        },
        "additionalProperties": False,
    },
    "Explanation": {
        "type": "object",
        "required": ["backend", "query"],
        "properties": {
            "backend": {"enum": ["druid", "embedded"]},
            "query": {"description": "The native Druid query, or the SQL and its parameters."},
        },
        "additionalProperties": False,
    },
    "Meta": {
        "type": "object",
        "required": ["dimensions", "aggregations", "filter_types", "granularities", "limits"],
        "properties": {
            "dimensions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "kind"],
                    "properties": {
                        "name": {"enum": list(DIMENSIONS)},
                        "kind": {"enum": ["string", "number", "array"]},
                    },
                    "additionalProperties": False,
                },
            },
            "aggregations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "fields", "outputs"],
                    "properties": {
                        "type": {"type": "string"},
                        "fields": {"type": ["array", "null"], "items": {"type": "string"}},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["field", "output"],
                                "properties": {
                                    "field": {"type": ["string", "null"]},
                                    "output": {"type": "string"},
                                },
                                "additionalProperties": False,
                            },
                        },
                    },
                    "additionalProperties": False,
                },
            },
            "filter_types": {"type": "array", "items": {"enum": list(FILTER_TYPES)}},
            "search_types": _STRINGS,
            "pattern_filter_kinds": _STRINGS,
            "bound_orderings": {"type": "object", "additionalProperties": _STRINGS},
            "granularities": {"type": "array", "items": {"enum": list(GRANULARITIES)}},
            "order_directions": _STRINGS,
            "limits": {
                "type": "object",
                "description": "Caps on one query, and the admission limits (0: off).",
                "additionalProperties": {"type": ["number", "null"]},
            },
        },
        "additionalProperties": False,
    },
}
