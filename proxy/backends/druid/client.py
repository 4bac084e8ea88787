"""HTTP client for a Druid broker: the only module that speaks `requests` on the serving path.

Druid's failures are mapped to the service's error tree here, at the boundary:
refused/unreachable → BackendUnavailable, over capacity → BackendOverloaded, deadline →
BackendTimeout (and the query is cancelled on the broker), anything malformed → BackendError.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson
import requests

from proxy.errors import (
    BackendError,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ProxyError,
)

log = logging.getLogger(__name__)

# Druid error `category` (or legacy `error` code) → the service error it means for a caller.
_CATEGORIES: dict[str, type[ProxyError]] = {
    "TIMEOUT": BackendTimeout,
    "Query timeout": BackendTimeout,
    "CAPACITY_EXCEEDED": BackendOverloaded,
    "Query capacity exceeded": BackendOverloaded,
    "Resource limit exceeded": BadRequest,
}
_MESSAGES: dict[type[ProxyError], str] = {
    BackendTimeout: "The query did not finish within its deadline; narrow the interval or filters.",
    BackendOverloaded: "The analytics backend is at capacity; retry shortly.",
    BadRequest: "The query needs more resources than allowed; narrow it or add a limit.",
    BackendError: "The analytics backend failed to answer the query.",
    BackendUnavailable: "The analytics backend is unavailable; retry shortly.",
}


class DruidClient:
    """Posts native queries to one broker with a pooled session per thread."""

    def __init__(self, broker_url: str, connect_timeout_secs: float) -> None:
        self.broker_url = broker_url.rstrip("/")
        self.connect_timeout_secs = connect_timeout_secs
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def query(self, native: dict[str, Any], deadline_secs: float) -> list[dict[str, Any]]:
        """Run a native query; the rows, or a mapped ProxyError."""
        query_id = str(native.get("context", {}).get("queryId", ""))
        try:
            response = self._session().post(
                f"{self.broker_url}/druid/v2/",
                data=orjson.dumps(native),
                headers={"Content-Type": "application/json"},
                timeout=(self.connect_timeout_secs, deadline_secs),
            )
            body = response.content
        except requests.Timeout as exc:
            # Timeout is a ConnectionError subclass for connect timeouts: test it first.
            self.cancel(query_id)
            if isinstance(exc, requests.ConnectTimeout):
                raise BackendUnavailable(_MESSAGES[BackendUnavailable]) from exc
            raise BackendTimeout(_MESSAGES[BackendTimeout]) from exc
        except requests.RequestException as exc:
            raise BackendUnavailable(_MESSAGES[BackendUnavailable]) from exc
        return _rows(response.status_code, body, query_id)

    def cancel(self, query_id: str) -> None:
        """Ask the broker to stop a query; best effort, never raises."""
        if not query_id:
            return
        try:
            self._session().delete(
                f"{self.broker_url}/druid/v2/{query_id}", timeout=(self.connect_timeout_secs, 2.0)
            )
        except requests.RequestException:
            log.warning("could not cancel druid query %s", query_id)

    def ready(self) -> bool:
        """Whether the broker has synced its segment view and accepts queries."""
        try:
            response = self._session().get(
                f"{self.broker_url}/druid/broker/v1/readiness",
                timeout=(self.connect_timeout_secs, 2.0),
            )
        except requests.RequestException:
            return False
        return response.status_code == 200


def _decode(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _rows(status: int, body: bytes, query_id: str) -> list[dict[str, Any]]:
    payload = _decode(body)
    if status == 200 and isinstance(payload, list):
        return payload
    if status == 200:
        # Druid streams results; an error after the first bytes leaves a truncated 200 body.
        log.error("druid query %s: 200 with unparseable or non-list body", query_id)
        raise BackendError(_MESSAGES[BackendError])
    raise _error(status, payload, body, query_id)


def _error(status: int, payload: Any, body: bytes, query_id: str) -> ProxyError:
    details = payload if isinstance(payload, dict) else {}
    category = str(details.get("category") or details.get("error") or "")
    log.error(
        "druid query %s failed: status=%s category=%s message=%s",
        query_id,
        status,
        category,
        details.get("errorMessage") or body[:500].decode("utf-8", "replace"),
    )
    kind = _CATEGORIES.get(category)
    if kind is None and details.get("error") in _CATEGORIES:
        kind = _CATEGORIES[str(details["error"])]
    if kind is None:
        kind = _by_status(status)
    return kind(_MESSAGES.get(kind, _MESSAGES[BackendError]))


def _by_status(status: int) -> type[ProxyError]:
    if status == 429:
        return BackendOverloaded
    if status == 504:
        return BackendTimeout
    if status in (502, 503):
        return BackendUnavailable
    return BackendError
