"""One JSON error shape for every failure: `{"detail", "code", "errors"?}`.

The service's ProxyErrors, werkzeug's own (404, 405, 413, ...) and anything unexpected (a
500 whose cause goes to the log, never into the body) are all rendered here, and each notes
its code in the request's record for the metrics and the access line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from proxy.errors import ProxyError
from proxy.runtime.logs import access_log
from proxy.web.observe import current_record
from proxy.web.responses import json_response


def register_error_handlers(app: Flask) -> None:
    """Render every error the app can meet in the one JSON shape."""
    app.register_error_handler(ProxyError, _proxy_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _proxy_error(error: ProxyError) -> Response:
    return _rendered(error.status, error.detail, error.code, error.errors, error.headers())


def _http_error(error: HTTPException) -> Response:
    code = re.sub(r"[^a-z]+", "_", (error.name or "error").lower()).strip("_")
    allowed = getattr(error, "valid_methods", None)
    headers = {"Allow": ", ".join(sorted(allowed))} if allowed else {}
    return _rendered(error.code or 500, error.description or error.name, code, headers=headers)


def _unexpected(error: Exception) -> Response:
    access_log.exception("unhandled error in request %s", current_record().request_id)
    return _rendered(500, "Internal error.", "internal_error")


def _rendered(
    status: int,
    detail: str,
    code: str,
    errors: Mapping[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    current_record().error_code = code
    body: dict[str, Any] = {"detail": detail, "code": code}
    if errors:
        body["errors"] = errors
    return json_response(body, status, headers)
