"""Prometheus metrics of the service, safe under gunicorn's worker processes.

With `PROMETHEUS_MULTIPROC_DIR` set before prometheus_client is first imported (gunicorn's
config module `proxy.gunicorn_conf` does it in the master), every worker writes its samples to
files there and `GET /metrics` sums them across workers; without it (tests, one process) the
default registry answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from proxy.errors import BackendTimeout

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter("reporting_proxy_requests_total", "HTTP requests answered.", ["route", "method", "status"])
REQUEST_LATENCY = Histogram(
    "reporting_proxy_request_duration_seconds",
    "Time from request start to response, by route and status.",
    ["route", "status"],
    buckets=_LATENCY_BUCKETS,
)
BACKEND_LATENCY = Histogram(
    "reporting_proxy_backend_duration_seconds",
    "Time the backend took to answer a query, failures included.",
    ["backend"],
    buckets=_LATENCY_BUCKETS,
)
REJECTIONS = Counter(
    "reporting_proxy_rejections_total", "Requests refused with a 4xx, by error code.", ["code"]
)
TIMEOUTS = Counter(
    "reporting_proxy_backend_timeouts_total", "Queries that ran past the request deadline.", ["backend"]
)
IN_FLIGHT = Gauge(
    "reporting_proxy_queries_in_flight",
    "Queries running on the backend now.",
    ["backend"],
    multiprocess_mode="livesum",
)
CACHE_REQUESTS = Counter(
    "reporting_proxy_cache_requests_total",
    "Reports answered, by what the result cache did: hit, miss, revalidated (304) or uncached.",
    ["outcome"],
)
CACHE_SHARED = Counter(
    "reporting_proxy_cache_shared_total",
    "Requests that waited for an identical request's backend query and took its answer.",
)
CACHE_EVICTIONS = Counter(
    "reporting_proxy_cache_evictions_total", "Answers dropped from the result cache to stay within its bytes."
)
CACHE_TOO_LARGE = Counter(
    "reporting_proxy_cache_too_large_total",
    "Answers not kept: larger than the room the result cache's bound leaves one answer (an eighth).",
)
CACHE_BYTES = Gauge(
    "reporting_proxy_cache_bytes",
    "Bytes the result cache holds, as last seen by any worker.",
    multiprocess_mode="mostrecent",
)
CACHE_OUTCOMES = ("hit", "miss", "revalidated", "uncached")
LIMITS_STORE_LATENCY = Histogram(
    "reporting_proxy_limits_store_duration_seconds",
    "Time a call to the shared limits store took, failures included, by operation.",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
LIMITS_STORE_ERRORS = Counter(
    "reporting_proxy_limits_store_errors_total",
    "Calls to the shared limits store that failed or timed out (the request admitted unlimited, "
    "or refused with limits_unavailable when PROXY_LIMITS_ON_STORE_ERROR=closed).",
    ["operation"],
)

ACCESS_STORE_LATENCY = Histogram(
    "reporting_proxy_access_store_duration_seconds",
    "Time a call to the access store took, failures included, by store (sqlite, postgres) and operation.",
    ["store", "operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ACCESS_STORE_ERRORS = Counter(
    "reporting_proxy_access_store_errors_total",
    "Calls to the access store that failed or timed out (answered 503 access_store_unavailable).",
    ["store", "operation"],
)


def start_backend(backend: str) -> None:
    """Create the backend's series at zero, so dashboards see them before its first query."""
    IN_FLIGHT.labels(backend)
    TIMEOUTS.labels(backend)
    BACKEND_LATENCY.labels(backend)
    for outcome in CACHE_OUTCOMES:
        CACHE_REQUESTS.labels(outcome)


def observe_cache(outcome: str, shared: bool = False) -> None:
    """Count one report by what the cache did with it."""
    CACHE_REQUESTS.labels(outcome).inc()
    if shared:
        CACHE_SHARED.inc()


def observe_cache_store(evicted: int, volume_bytes: int) -> None:
    """Count evictions and note the store's size after an answer was stored."""
    if evicted:
        CACHE_EVICTIONS.inc(evicted)
    CACHE_BYTES.set(volume_bytes)


def observe_cache_too_large() -> None:
    """Count an answer the result cache did not keep for its size."""
    CACHE_TOO_LARGE.inc()


def observe_limits_store(operation: str, seconds: float | None, failed: bool) -> None:
    """Time one call to the shared limits store (None: not tried, as it failed a moment ago),
    and count it when it failed."""
    if seconds is not None:
        LIMITS_STORE_LATENCY.labels(operation).observe(seconds)
    if failed:
        LIMITS_STORE_ERRORS.labels(operation).inc()


def observe_access_store(store: str, operation: str, seconds: float, failed: bool) -> None:
    """Time one call to the access store, and count it when it failed."""
    ACCESS_STORE_LATENCY.labels(store, operation).observe(seconds)
    if failed:
        ACCESS_STORE_ERRORS.labels(store, operation).inc()


def observe_request(route: str, method: str, status: int, code: str | None, seconds: float) -> None:
    """Count one answered request, and its rejection when it is a 4xx."""
    REQUESTS.labels(route, method, str(status)).inc()
    REQUEST_LATENCY.labels(route, str(status)).observe(seconds)
    if 400 <= status < 500 and code:
        REJECTIONS.labels(code).inc()


@contextmanager
def backend_query(backend: str) -> Iterator[None]:
    """Time one backend query and count it in flight while it runs."""
    started = time.perf_counter()
    try:
        with IN_FLIGHT.labels(backend).track_inprogress():
            yield
    except BackendTimeout:
        TIMEOUTS.labels(backend).inc()
        raise
    finally:
        BACKEND_LATENCY.labels(backend).observe(time.perf_counter() - started)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric, summed across workers in multiprocess mode."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
