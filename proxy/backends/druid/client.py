"""HTTP client for a Druid broker: urllib3 straight, one connection pool shared by the threads.

Druid's failures are mapped to the service's error tree here, at the boundary:
refused/unreachable → BackendUnavailable, over capacity → BackendOverloaded, deadline →
BackendTimeout (and the query is cancelled on the broker), caller gone → ClientDisconnected
(cancelled too), anything malformed → BackendError. One budget bounds the whole call.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from urllib3 import BaseHTTPResponse, HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, HTTPError, ReadTimeoutError
from urllib3.util import Url, parse_url

from proxy.backends.druid.conditional import Answered, recording_for
from proxy.backends.druid.watch import QueryWatch, Reason
from proxy.errors import (
    BackendError,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ClientDisconnected,
    ProxyError,
)
from proxy.runtime.disconnect import ClientGone, never_gone

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
_JSON_HEADERS = {"Content-Type": "application/json"}
# Above any worker's thread count plus its cancels in flight; only connections that were in use
# at the same time are ever kept, and past this many a connection is closed after its call.
_POOL_CONNECTIONS = 32
# Cancels and readiness checks answer at once when the broker is well.
_SHORT_READ_SECS = 2.0


class DruidClient:
    """Posts native queries to one broker over keep-alive connections pooled per process."""

    def __init__(self, broker_url: str, connect_timeout_secs: float) -> None:
        self.broker_url = broker_url.rstrip("/")
        self.connect_timeout_secs = connect_timeout_secs
        self._url = parse_url(self.broker_url)
        if not self._url.host:
            raise ValueError(f"no host in the broker URL {broker_url!r}")
        self._path = self._url.path or ""
        self._pools: dict[int, HTTPConnectionPool] = {}

    def _pool(self) -> HTTPConnectionPool:
        # By process id: a forked child must not share its parent's sockets.
        pid = os.getpid()
        pool = self._pools.get(pid)
        if pool is None:
            pool = self._pools.setdefault(pid, _broker_pool(self._url))  # atomic: one wins
        return pool

    def query(
        self, native: dict[str, Any], budget_secs: float, client_gone: ClientGone = never_gone
    ) -> list[dict[str, Any]]:
        """Run a native query within `budget_secs` (connect, wait and read all included).

        Past the deadline, or once `client_gone()` says the caller left, the query is cut
        short and the broker told to cancel it (`DELETE /druid/v2/{queryId}`). While the result
        cache records an answer (proxy/backends/druid/conditional.py), the query is sent
        conditionally and its ETag kept.
        """
        recording = recording_for(str(native.get("context", {}).get("queryId", "")))
        if recording is not None:
            return recording.query(self, native, budget_secs, client_gone)
        rows = self._query(native, budget_secs, client_gone, {}).rows
        assert rows is not None  # only a conditional query is answered 304
        return rows

    def conditional_query(
        self, native: dict[str, Any], budget_secs: float, client_gone: ClientGone, if_none_match: str
    ) -> Answered:
        """A native query sent with `If-None-Match`: 304 (rows None) while that ETag is current,
        else the rows and the ETag Druid gives them (None when it gives none)."""
        return self._query(native, budget_secs, client_gone, {"If-None-Match": if_none_match})

    def _query(
        self, native: dict[str, Any], budget_secs: float, client_gone: ClientGone, headers: dict[str, str]
    ) -> Answered:
        context = native.get("context", {})
        query_id = str(context.get("queryId", ""))
        with QueryWatch(budget_secs, partial(self.cancel, query_id), client_gone) as watch:
            try:
                druid_deadline = time.monotonic() + _druid_timeout_secs(context)
                status, etag, body = self._post(native, watch, druid_deadline, headers)
                # Settle the race with the watch: once the body is in, only an earlier fire counts.
                watch.finish()
                _raise_if_fired(watch)
                if status == 304 and "If-None-Match" in headers:
                    return Answered(None, headers["If-None-Match"])
                past = time.monotonic() >= druid_deadline
                return Answered(_rows(status, body, query_id, past_druid_timeout=past), etag)
            except BackendTimeout:
                watch.expire()  # our clock or Druid's: either way Druid is told to stop
                raise

    def _post(
        self, native: dict[str, Any], watch: QueryWatch, druid_deadline: float, headers: dict[str, str]
    ) -> tuple[int, str | None, bytes]:
        remaining = max(watch.remaining(), 0.001)
        try:
            response = self._pool().urlopen(
                "POST",
                f"{self._path}/druid/v2/",
                body=orjson.dumps(native),
                headers={**_JSON_HEADERS, **headers},
                timeout=Timeout(connect=min(self.connect_timeout_secs, remaining), read=remaining),
                retries=False,
                redirect=False,
                preload_content=False,
            )
            return response.status, response.headers.get("ETag"), _read(response, watch)
        except ConnectTimeoutError as exc:
            # Refused and unreachable (NewConnectionError) are connect timeouts to urllib3 too.
            raise BackendUnavailable(_MESSAGES[BackendUnavailable]) from exc
        except ReadTimeoutError as exc:
            _raise_if_fired(watch, exc)
            raise BackendTimeout(_MESSAGES[BackendTimeout]) from exc
        except HTTPError as exc:
            # A stream the watch cut, or the broker going away mid-answer (past the query's Druid
            # timeout, most likely that timeout).
            _raise_if_fired(watch, exc)
            if watch.remaining() <= 0 or time.monotonic() >= druid_deadline:
                raise BackendTimeout(_MESSAGES[BackendTimeout]) from exc
            raise BackendUnavailable(_MESSAGES[BackendUnavailable]) from exc

    def cancel(self, query_id: str) -> None:
        """Ask the broker to stop a query; best effort, never raises, any thread."""
        if not query_id:
            return
        try:
            self._request("DELETE", f"/druid/v2/{query_id}")
        except HTTPError:
            log.warning("could not cancel druid query %s", query_id)

    def ready(self) -> bool:
        """Whether the broker has synced its segment view and accepts queries."""
        try:
            return self._request("GET", "/druid/broker/v1/readiness").status == 200
        except HTTPError:
            return False

    def _request(self, method: str, path: str) -> BaseHTTPResponse:
        return self._pool().urlopen(
            method,
            f"{self._path}{path}",
            timeout=Timeout(connect=self.connect_timeout_secs, read=_SHORT_READ_SECS),
            retries=False,
            redirect=False,
        )


def _read(response: BaseHTTPResponse, watch: QueryWatch) -> bytes:
    """The whole body, unless the watch cuts the stream first.

    urllib3 hands the connection back to the pool once the body is read to its end, and closes
    it first on any error, a cut included: nothing half-read goes back.
    """
    connection = response.connection
    if isinstance(connection, _BrokerConnection):
        watch.attach(connection.cutter())
    return response.read()


class _BrokerConnection(HTTPConnection):
    """A pooled connection that a query's watch can cut only while that query is using it.

    A watch may fire just after its answer was read in full, when the connection may already
    serve another thread's query: counting the requests sent tells the two apart.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = threading.Lock()
        self._requests_sent = 0
        self._was_cut = False

    def request(self, *args: Any, **kwargs: Any) -> None:
        with self._guard:
            self._requests_sent += 1
            if self._was_cut:
                # Cut while idle in the pool, too late for the pool's own check: connect afresh.
                self._was_cut = False
                self.close()
        super().request(*args, **kwargs)

    def cutter(self) -> Callable[[], None]:
        """Shuts the socket down, so a read blocked on it in another thread returns, unless the
        connection has moved on to another request by then."""
        return partial(self._cut, self._requests_sent)

    def _cut(self, request_number: int) -> None:
        with self._guard:
            sock = self.sock
            if request_number != self._requests_sent or sock is None:
                return
            self._was_cut = True
            try:
                # The plain socket's shutdown: a TLS socket's own also drops its TLS state,
                # under the feet of the thread reading from it.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


class _BrokerTLSConnection(_BrokerConnection, HTTPSConnection):
    """The same over TLS."""


class _BrokerPool(HTTPConnectionPool):
    ConnectionCls = _BrokerConnection


class _BrokerTLSPool(HTTPSConnectionPool):
    ConnectionCls = _BrokerTLSConnection


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _BrokerPool, "https": _BrokerTLSPool}


def _broker_pool(url: Url) -> HTTPConnectionPool:
    """Thread-safe; never blocks for a free connection; no retries, redirects or proxies."""
    return _POOLS[url.scheme or "http"](
        str(url.host), url.port, maxsize=_POOL_CONNECTIONS, block=False, retries=False
    )


def _raise_if_fired(watch: QueryWatch, cause: BaseException | None = None) -> None:
    if watch.reason is not None:
        kind = _WATCH_ERRORS[watch.reason]
        raise kind(_MESSAGES[kind]) from cause


def _decode(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _druid_timeout_secs(context: dict[str, Any]) -> float:
    """The `timeout` the query asks Druid to keep (ms in its context); none: Druid's own default,
    which this side does not know, so never."""
    timeout_ms = context.get("timeout")
    return timeout_ms / 1000 if isinstance(timeout_ms, int) and timeout_ms > 0 else math.inf


def _rows(status: int, body: bytes, query_id: str, past_druid_timeout: bool) -> list[dict[str, Any]]:
    payload = _decode(body)
    if status == 200 and isinstance(payload, list):
        return payload
    if status == 200:
        # Druid streams results, so an error after the first bytes leaves a truncated 200 body
        # that cannot say what failed; once the query's own timeout has passed, that was it.
        if past_druid_timeout and payload is None:
            log.warning("druid query %s: 200 body cut off after its druid timeout", query_id)
            raise BackendTimeout(_MESSAGES[BackendTimeout])
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
