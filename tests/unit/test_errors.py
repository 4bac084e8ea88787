"""The error tree: each class's status, code and headers, and JSON-ready field errors."""

from __future__ import annotations

import pytest

from proxy import errors

# (class, status, code, headers)
_TREE = [
    (errors.ProxyError, 500, "internal_error", {}),
    (errors.BadRequest, 400, "invalid_request", {}),
    (errors.ResultTooLarge, 400, "result_too_large", {}),
    (errors.UnsupportedQuery, 400, "unsupported_query", {}),
    (errors.QueryTooExpensive, 400, "query_too_expensive", {}),
    (
        errors.NotAuthenticated,
        401,
        "not_authenticated",
        {"WWW-Authenticate": 'Token realm="reporting", Bearer realm="reporting"'},
    ),
    (errors.Forbidden, 403, "forbidden", {}),
    (errors.OriginNotAllowed, 403, "origin_not_allowed", {}),
    (errors.NotFound, 404, "not_found", {}),
    (errors.OrganizationNotFound, 404, "organization_not_found", {}),
    (errors.NotAcceptable, 406, "not_acceptable", {"Vary": "Accept"}),
    (errors.UnsupportedMediaType, 415, "unsupported_media_type", {}),
    (errors.ClientDisconnected, 499, "client_closed_request", {}),
    (errors.BackendError, 502, "backend_error", {}),
    (errors.BackendUnavailable, 503, "backend_unavailable", {"Retry-After": "5"}),
    (errors.BackendOverloaded, 503, "backend_overloaded", {"Retry-After": "2"}),
    (errors.NotReady, 503, "not_ready", {"Retry-After": "5"}),
    (errors.ServiceBusy, 503, "service_busy", {"Retry-After": "2"}),
    (errors.LimitsUnavailable, 503, "limits_unavailable", {"Retry-After": "2"}),
    (errors.AccessStoreUnavailable, 503, "access_store_unavailable", {"Retry-After": "2"}),
    (errors.BackendTimeout, 504, "backend_timeout", {}),
]


@pytest.mark.parametrize(
    ("error_class", "status", "code", "headers"), [pytest.param(*row, id=row[0].__name__) for row in _TREE]
)
def test_error_carries_its_status_code_and_headers(
    error_class: type[errors.ProxyError], status: int, code: str, headers: dict[str, str]
) -> None:
    error = error_class("went wrong")
    assert (error.status, error.code, error.headers(), error.detail) == (status, code, headers, "went wrong")


@pytest.mark.parametrize(("retry_after", "header"), [(1, "1"), (30, "30")])
def test_too_many_requests_says_when_to_retry(retry_after: int, header: str) -> None:
    error = errors.TooManyRequests("slow down", retry_after=retry_after)
    assert (error.status, error.code, error.headers()) == (429, "too_many_requests", {"Retry-After": header})


def test_every_error_class_is_in_the_table() -> None:
    classes = {
        value for value in vars(errors).values() if isinstance(value, type) and issubclass(value, Exception)
    }
    assert classes == {row[0] for row in _TREE} | {errors.TooManyRequests}


@pytest.mark.parametrize("name", [row[0].__name__ for row in _TREE])
def test_error_class_is_drawn_in_the_tree(name: str) -> None:
    assert name in (errors.__doc__ or "").split()


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ({"group_by": {0: ["Not a dimension."]}}, {"group_by.0": ["Not a dimension."]}),
        ({"filters": {"fields": {1: {"value": ["Bad."]}}}}, {"filters.fields.1.value": ["Bad."]}),
        ({"limit": ["Too large."]}, {"limit": ["Too large."]}),
        (
            {"interval": {"_schema": ["Bad."], "end": ["Late."]}},
            {"interval": ["Bad."], "interval.end": ["Late."]},
        ),
        ({"_schema": ["Not an object."]}, {"_schema": ["Not an object."]}),
        ({"filters": ["Bad.", {"type": ["Unknown."]}]}, {"filters": ["Bad."], "filters.type": ["Unknown."]}),
    ],
)
def test_field_error_keys_become_flat_paths(
    messages: dict[object, object], expected: dict[str, object]
) -> None:
    assert errors.BadRequest("Invalid.", messages).errors == expected


def test_no_field_errors_is_none() -> None:
    assert errors.BadRequest("Invalid.").errors is None
