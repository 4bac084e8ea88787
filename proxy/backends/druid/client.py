"""HTTP client for a Druid broker: the only module that speaks `requests` on the serving path.

Druid's failures are mapped to the service's error tree here, at the boundary:
refused/unreachable → BackendUnavailable, over capacity → BackendOverloaded, deadline →
BackendTimeout (and the query is cancelled on the broker), caller gone → ClientDisconnected
(cancelled too), anything malformed → BackendError. One budget bounds the whole call.
"""

from __future__ import annotations

import logging
import socket
import threading
from functools import partial
from typing import Any

import orjson
import requests

from proxy.backends.druid.watch import QueryWatch, Reason
from proxy.disconnect import ClientGone, never_gone
from proxy.errors import (
    BackendError,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ClientDisconnected,
    ProxyError,
)
from proxy.gc_pause import gc_paused

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
    ClientDisconnected: "The caller closed the connection; the query was cancelled.",
}
# Why a QueryWatch fired → what the caller is told.
_WATCH_ERRORS: dict[Reason, type[ProxyError]] = {
    "deadline": BackendTimeout,
    "disconnected": ClientDisconnected,
}
_CHUNK_BYTES = 64 * 1024


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
            # The broker URL is configured, not discovered: without this, every query scans the
            # environment for proxy variables and .netrc (~160 µs CPU a request on the bench box).
            session.trust_env = False
        return session

    def _drop_session(self) -> None:
        # A cut stream may leave a half-read connection behind: start the next query afresh.
        session: requests.Session | None = getattr(self._local, "session", None)
        self._local.session = None
        if session is not None:
            session.close()

    def query(
        self, native: dict[str, Any], budget_secs: float, client_gone: ClientGone = never_gone
    ) -> list[dict[str, Any]]:
        """Run a native query within `budget_secs` (connect, wait and read all included).

        Past the deadline, or once `client_gone()` says the caller left, the query is cut
        short and the broker told to cancel it (`DELETE /druid/v2/{queryId}`).
        """
        query_id = str(native.get("context", {}).get("queryId", ""))
        with QueryWatch(budget_secs, partial(self.cancel, query_id), client_gone) as watch:
            try:
                status, body = self._post(native, watch)
                # Settle the race with the watch: once the body is in, only an earlier fire counts.
                watch.finish()
                _raise_if_fired(watch)
                return _rows(status, body, query_id)
            except BackendTimeout:
                watch.expire()  # our clock or Druid's: either way Druid is told to stop
                raise
            finally:
                if watch.reason is not None:
                    self._drop_session()

    def _post(self, native: dict[str, Any], watch: QueryWatch) -> tuple[int, bytes]:
        remaining = max(watch.remaining(), 0.001)
        try:
            response = self._session().post(
                f"{self.broker_url}/druid/v2/",
                data=orjson.dumps(native),
                headers={"Content-Type": "application/json"},
                timeout=(min(self.connect_timeout_secs, remaining), remaining),
                stream=True,
            )
            with response:
                watch.attach(partial(_cut, response))
                return response.status_code, _read(response, watch)
        except requests.ConnectTimeout as exc:
            # Timeout is a ConnectionError subclass for connect timeouts: test it first.
            raise BackendUnavailable(_MESSAGES[BackendUnavailable]) from exc
        except requests.Timeout as exc:
            _raise_if_fired(watch, exc)
            raise BackendTimeout(_MESSAGES[BackendTimeout]) from exc
        except requests.RequestException as exc:
            # A stream the watch cut, or a read timeout mid-body (requests calls it a
            # ConnectionError), or the broker going away.
            _raise_if_fired(watch, exc)
            if watch.remaining() <= 0:
                raise BackendTimeout(_MESSAGES[BackendTimeout]) from exc
            raise BackendUnavailable(_MESSAGES[BackendUnavailable]) from exc

    def cancel(self, query_id: str) -> None:
        """Ask the broker to stop a query; best effort, never raises, any thread."""
        if not query_id:
            return
        try:
            # A one-off session: this runs on the watch's thread, not the worker's; like the
            # query it ignores proxy variables, so it goes where the query went.
            with requests.Session() as session:
                session.trust_env = False
                session.delete(
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


def _read(response: requests.Response, watch: QueryWatch) -> bytes:
    chunks = []
    for chunk in response.iter_content(_CHUNK_BYTES):
        if watch.reason is not None:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _cut(response: requests.Response) -> None:
    """Shut the response's socket down so a read blocked on it in another thread returns."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


def _raise_if_fired(watch: QueryWatch, cause: BaseException | None = None) -> None:
    if watch.reason is not None:
        kind = _WATCH_ERRORS[watch.reason]
        raise kind(_MESSAGES[kind]) from cause


# groupBy array rows take about 35 bytes each: a body this many times larger is that many rows.
_BYTES_PER_ROW = 35


def _decode(body: bytes) -> Any:
    try:
        # A 100,000-row answer decodes into as many lists: no collector passes meanwhile.
        with gc_paused(len(body) // _BYTES_PER_ROW):
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
