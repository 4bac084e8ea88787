"""Each request's id and record, and what is observed of it: metrics and one access-log line.

The record (proxy.service.call.Record) is the request's one store of what it did: begun here
before the view runs, filled by the service and the error handlers, read here once the
response is ready. It lives in the WSGI environ under one key, never in `flask.g`.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from flask import Response, request

from proxy.runtime.logs import log_request
from proxy.runtime.metrics import observe_request
from proxy.service.call import Record

# A caller's id is echoed and logged, so one shaped like an API key (`rpk_...`) is replaced.
REQUEST_ID = re.compile(r"^(?!rpk_)[A-Za-z0-9._-]{1,64}$")
_RECORD = "reporting_proxy.record"
# `X-Request-Start: t=<epoch seconds>` from the front server (nginx's `$msec`): when the request
# arrived, before it queued for a worker thread. A stamp from further ahead than clocks differ,
# or older than any queue holds a request, is not the front's: the thread's pick-up time serves.
_REQUEST_START = re.compile(r"^t=(\d{1,12}(?:\.\d{1,6})?)$")
_PLAUSIBLE_QUEUE_SECS = (-1.0, 300.0)
# Metric labels take only these methods, so odd request methods cannot grow the series.
_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


def begin_request() -> None:
    """Give the request its id (the caller's `X-Request-Id` when well-formed) and a fresh record."""
    _begin()


def _begin() -> Record:
    supplied = request.headers.get("X-Request-Id", "")
    request_id = supplied if REQUEST_ID.match(supplied) else str(uuid.uuid4())
    record = request.environ[_RECORD] = Record(request_id, arrival(request.headers.get("X-Request-Start")))
    return record


def arrival(request_start: str | None) -> float:
    """When the request arrived, on the `time.perf_counter()` clock: the front's stamp if plausible."""
    now = time.perf_counter()
    stamp = _REQUEST_START.match(request_start or "")
    if stamp is None:
        return now
    queued = time.time() - float(stamp.group(1))
    low, high = _PLAUSIBLE_QUEUE_SECS
    return now - max(0.0, queued) if low <= queued <= high else now


def current_record() -> Record:
    """The record of the request being answered."""
    record = request.environ.get(_RECORD)
    return record if isinstance(record, Record) else _begin()


def finish_request(response: Response) -> Response:
    """Stamp the request id on the response, then count the request and log its one line."""
    record = current_record()
    response.headers["X-Request-Id"] = record.request_id
    _observe(record, response.status_code)
    return response


def _observe(record: Record, status: int) -> None:
    """The request's metrics and access-log line; never a header, query string or body."""
    route = request.url_rule.rule if request.url_rule else "unmatched"
    method = request.method
    seconds = time.perf_counter() - record.arrived
    observe_request(route, method if method in _METHODS else "other", status, record.error_code, seconds)
    log_request(_access_fields(record, method, route, status, seconds))


def _access_fields(record: Record, method: str, route: str, status: int, seconds: float) -> dict[str, Any]:
    return {
        "request_id": record.request_id,
        "method": method,
        "route": route,
        "organization": record.organization,
        "principal": record.principal,
        "status": status,
        "error_code": record.error_code,
        "duration_ms": round(seconds * 1000, 3),
        "backend": record.backend,
        "cache": record.cache,
        "representation": record.representation,
        "backend_ms": None if record.backend_ms is None else round(record.backend_ms, 3),
        "druid_query_id": record.backend_query_id if record.backend == "druid" else None,
    }
