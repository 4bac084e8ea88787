"""The embedded backend: translate the plan to SQL, run it on the current DuckDB generation.

A query runs with what is left of its request's budget and stops once its caller hangs up
(`watch.QueryStop`); DuckDB's failures map onto the service's errors by this table, first
match wins:

    interrupted at the deadline          BackendTimeout      504
    interrupted, the caller gone         ClientDisconnected  499
    duckdb.OutOfMemoryException          QueryTooExpensive   400 (over memory and spill space)
    duckdb.IOException, OSError          BackendUnavailable  503 (its files cannot be read)
    any other duckdb.Error               BackendError        502
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import duckdb

from proxy.backends.base import Scope
from proxy.backends.embedded.reader import EngineLimits, Reader
from proxy.backends.embedded.translator import SqlQuery, translate, translate_totals
from proxy.backends.embedded.watch import QueryStop, Reason
from proxy.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ClientDisconnected,
    ProxyError,
    QueryTooExpensive,
)
from proxy.query.plan import BackendRow, ResultPlan
from proxy.settings import Settings

log = logging.getLogger(__name__)

# Why a query was interrupted → what the caller hears.
STOPPED: dict[Reason, tuple[type[ProxyError], str]] = {
    "deadline": (BackendTimeout, "The query ran past the request's time budget."),
    "disconnected": (ClientDisconnected, "The caller closed the connection; the query was stopped."),
}
TOO_EXPENSIVE = (
    "The query needs more memory than the engine may give one query: narrow the interval, "
    "use a coarser granularity or group by fewer array dimensions."
)


def engine_limits(settings: Settings) -> EngineLimits:
    """The DuckDB bounds of each worker process, from the `PROXY_EMBEDDED_*` settings."""
    return EngineLimits(
        memory_limit_mb=settings.embedded_memory_limit_mb,
        threads=settings.embedded_threads,
        spill_limit_mb=settings.embedded_spill_limit_mb,
    )


class EmbeddedBackend:
    """Runs planned queries on the embedded DuckDB engine of `settings.embedded_dir`."""

    name = "embedded"

    def __init__(self, settings: Settings) -> None:
        self.reader = Reader(settings.embedded_dir, engine_limits(settings))

    def explain(self, plan: ResultPlan, scope: Scope) -> Any:
        return translate(plan, scope.organization_id).explain()

    def explain_totals(self, plan: ResultPlan, scope: Scope) -> Any:
        return translate_totals(plan, scope.organization_id).explain()

    def execute(self, plan: ResultPlan, scope: Scope) -> Sequence[BackendRow]:
        # (bucket, groups..., metrics...) tuples are backend rows as they are
        return self._answered(translate(plan, scope.organization_id), scope)

    def totals(self, plan: ResultPlan, scope: Scope) -> list[Sequence[Any] | None]:
        rows = self._answered(translate_totals(plan, scope.organization_id), scope)
        # One row of every interval's metrics in turn; none at all before the first load.
        intervals, width = len(plan.totals_intervals), len(plan.metrics)
        if not rows:
            return [None] * intervals
        return [rows[0][index * width : (index + 1) * width] for index in range(intervals)]

    def _answered(self, query: SqlQuery, scope: Scope) -> list[tuple[Any, ...]]:
        try:
            rows = self._run(query, scope)
        except duckdb.OutOfMemoryException as exc:
            reason = str(exc).splitlines()[0]  # DuckDB appends paragraphs of tuning advice
            log.warning("embedded query over its memory in request %s: %s", scope.request_id, reason)
            raise QueryTooExpensive(TOO_EXPENSIVE) from exc
        except (duckdb.IOException, OSError) as exc:
            log.exception("embedded engine unavailable in request %s", scope.request_id)
            raise BackendUnavailable("The embedded engine cannot open its data.") from exc
        except duckdb.Error as exc:
            log.exception("embedded query failed in request %s: %s", scope.request_id, query.sql)
            raise BackendError("The embedded engine failed to answer.") from exc
        return rows

    def _run(self, query: SqlQuery, scope: Scope) -> list[tuple[Any, ...]]:
        _check_still_wanted(scope)
        with self.reader.cursor() as cursor:
            if cursor is None:
                return []  # nothing loaded yet: every bucket is empty
            stop = QueryStop(cursor.interrupt, scope.remaining_secs(), scope.client_gone)
            try:
                with stop:
                    return cursor.execute(query.sql, query.parameters).fetchall()
            except duckdb.InterruptException as exc:
                raise _stopped(stop.reason or "deadline") from exc

    def ready(self) -> bool:
        try:
            return self.reader.ready()
        except (duckdb.Error, OSError):
            log.exception("embedded engine not ready")
            return False


def _check_still_wanted(scope: Scope) -> None:
    """Run nothing for a request whose budget is spent or whose caller has already gone."""
    if scope.remaining_secs() <= 0:
        raise _stopped("deadline")
    if scope.client_gone():
        raise _stopped("disconnected")


def _stopped(reason: Reason) -> ProxyError:
    error, detail = STOPPED[reason]
    return error(detail)
