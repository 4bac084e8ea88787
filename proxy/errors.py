"""Every error the service answers with, each carrying its HTTP status and a stable code.

    ProxyError
    ├── BadRequest                    400 invalid_request   (payload, query string)
    │   ├── ResultTooLarge            400 result_too_large
    │   ├── UnsupportedQuery          400 unsupported_query (valid, but a backend cannot run it)
    │   └── QueryTooExpensive         400 query_too_expensive (over the engine's memory)
    ├── NotAuthenticated              401 not_authenticated
    ├── Forbidden                     403 forbidden
    │   └── OriginNotAllowed          403 origin_not_allowed (a CORS preflight from an unlisted origin)
    ├── NotFound                      404 not_found
    │   └── OrganizationNotFound      404 organization_not_found
    ├── NotAcceptable                 406 not_acceptable    (Vary: Accept; CSV asked for totals or compare)
    ├── UnsupportedMediaType          415 unsupported_media_type
    ├── TooManyRequests               429 too_many_requests (Retry-After)
    ├── ClientDisconnected            499 client_closed_request (nobody reads it)
    ├── BackendError                  502 backend_error      (answered garbage or failed)
    ├── BackendUnavailable            503 backend_unavailable (Retry-After)
    │   ├── BackendOverloaded         503 backend_overloaded  (Retry-After)
    │   └── NotReady                  503 not_ready           (Retry-After; GET /readyz)
    ├── ServiceBusy                   503 service_busy        (Retry-After; budget spent queueing)
    ├── LimitsUnavailable             503 limits_unavailable  (Retry-After; shared limits store down, fail-closed)
    ├── AccessStoreUnavailable        503 access_store_unavailable (Retry-After; API keys cannot be checked)
    └── BackendTimeout                504 backend_timeout

Views never build error responses by hand: they raise one of these and the app's error
handler renders `{"detail", "code", "errors"?}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ProxyError(Exception):
    """Root of every error the service reports to a caller."""

    status = 500
    code = "internal_error"
    retry_after: int | None = None

    def __init__(self, detail: str, errors: Mapping[Any, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = field_paths(errors) if errors else None

    def headers(self) -> dict[str, str]:
        """Extra response headers this error asks for."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(self.retry_after)}


# marshmallow's key for a message about an object as a whole, not one of its fields.
_WHOLE = "_schema"


def field_paths(errors: Mapping[Any, Any], prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as flat field paths → messages.

    `{"interval": {"end": [m]}, "aggregations": {0: {"fields": [m]}}}` becomes
    `{"interval.end": [m], "aggregations.0.fields": [m]}`; a message about an object as a whole
    goes to the object's path (`_schema` for the body itself).
    """
    flat: dict[str, list[str]] = {}
    for key, value in errors.items():
        path = prefix if key == _WHOLE and prefix else f"{prefix}.{key}" if prefix else str(key)
        for sub_path, messages in _messages(value, path).items():
            flat.setdefault(sub_path, []).extend(messages)
    return flat


def _messages(value: Any, path: str) -> dict[str, list[str]]:
    if isinstance(value, Mapping):
        return field_paths(value, path)
    flat: dict[str, list[str]] = {}
    for item in value if isinstance(value, list) else [value]:
        found = _messages(item, path) if isinstance(item, Mapping) else {path: [str(item)]}
        for sub_path, messages in found.items():
            flat.setdefault(sub_path, []).extend(messages)
    return flat


class BadRequest(ProxyError):
    status = 400
    code = "invalid_request"


class ResultTooLarge(BadRequest):
    code = "result_too_large"


class UnsupportedQuery(BadRequest):
    """A valid query that names something the backend's translation tables do not cover."""

    code = "unsupported_query"


class QueryTooExpensive(BadRequest):
    """A valid query whose working set outgrew the engine's memory (and its spill space)."""

    code = "query_too_expensive"


class NotAuthenticated(ProxyError):
    status = 401
    code = "not_authenticated"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Token realm="reporting", Bearer realm="reporting"'}


class Forbidden(ProxyError):
    status = 403
    code = "forbidden"


class OriginNotAllowed(Forbidden):
    code = "origin_not_allowed"


class NotFound(ProxyError):
    status = 404
    code = "not_found"


class OrganizationNotFound(NotFound):
    code = "organization_not_found"


class NotAcceptable(ProxyError):
    """The answer the query asks for has no form among those the `Accept` header takes."""

    status = 406
    code = "not_acceptable"

    def headers(self) -> dict[str, str]:
        # Another `Accept` would have been answered: a cache must not reuse this refusal for it.
        return {"Vary": "Accept"}


class UnsupportedMediaType(ProxyError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(ProxyError):
    status = 429
    code = "too_many_requests"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ClientDisconnected(ProxyError):
    """The caller hung up while its query ran; the backend query was abandoned."""

    status = 499
    code = "client_closed_request"


class BackendError(ProxyError):
    status = 502
    code = "backend_error"


class BackendUnavailable(ProxyError):
    status = 503
    code = "backend_unavailable"
    retry_after = 5


class BackendOverloaded(BackendUnavailable):
    code = "backend_overloaded"
    retry_after = 2


class NotReady(BackendUnavailable):
    """The engine does not answer queries yet; only the readiness probe says so."""

    code = "not_ready"


class ServiceBusy(ProxyError):
    """The request waited for a serving thread until its time budget was gone; nothing ran."""

    status = 503
    code = "service_busy"
    retry_after = 2


class LimitsUnavailable(ProxyError):
    """The shared limits store failed and the settings say to refuse rather than admit unlimited."""

    status = 503
    code = "limits_unavailable"
    retry_after = 2


class AccessStoreUnavailable(ProxyError):
    """The access store (its database) failed or timed out: an API key can be neither accepted nor refused."""

    status = 503
    code = "access_store_unavailable"
    retry_after = 2


class BackendTimeout(ProxyError):
    status = 504
    code = "backend_timeout"
