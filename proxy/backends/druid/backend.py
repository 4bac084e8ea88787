"""The Druid backend: translate the plan, run it on the broker, hand rows to the result step."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from proxy.backends.base import Scope
from proxy.backends.druid.client import DruidClient
from proxy.backends.druid.translator import DruidQuery, translate, translate_totals
from proxy.errors import BackendError, BackendTimeout
from proxy.query.plan import BackendRow, ResultPlan
from proxy.settings import Settings

# A plan → the native query that answers it (the rows, or the totals).
Translator = Callable[[ResultPlan, str, str, str, int, str | None], DruidQuery]


class DruidBackend:
    """Runs planned queries on a Druid broker."""

    name = "druid"

    def __init__(self, settings: Settings) -> None:
        assert settings.druid_broker_url is not None
        self.datasource = settings.druid_datasource
        self.deadline_secs = settings.request_timeout_secs
        self.lane = settings.druid_lane
        self.client = DruidClient(settings.druid_broker_url, settings.connect_timeout_secs)

    def _translate(self, plan: ResultPlan, scope: Scope, translator: Translator = translate) -> DruidQuery:
        # Druid gets slightly less than the request budget so it usually reports its own timeout;
        # a fixed share keeps the query a pure function of the request. What the request spent
        # before the call is enforced on our side (the client's watch), not by Druid.
        timeout_ms = int(self.deadline_secs * 1000 * 0.95)
        return translator(plan, scope.organization_id, self.datasource, scope.query_id, timeout_ms, self.lane)

    def explain(self, plan: ResultPlan, scope: Scope) -> Any:
        return self._translate(plan, scope).native

    def explain_totals(self, plan: ResultPlan, scope: Scope) -> Any:
        return self._translate(plan, scope, translate_totals).native

    def _run(self, druid_query: DruidQuery, scope: Scope) -> Any:
        budget = scope.remaining_secs()
        if budget <= 0:
            raise BackendTimeout("The request used its whole time budget before the query could start.")
        return self.client.query(druid_query.native, budget, scope.client_gone)

    def execute(self, plan: ResultPlan, scope: Scope) -> list[BackendRow]:
        druid_query = self._translate(plan, scope)
        rows = self._run(druid_query, scope)
        try:
            return plan_rows(rows, druid_query, plan)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise BackendError("The analytics backend answered in an unexpected shape.") from exc

    def totals(self, plan: ResultPlan, scope: Scope) -> list[Sequence[Any] | None]:
        druid_query = self._translate(plan, scope, translate_totals)
        rows = self._run(druid_query, scope)
        try:
            return totals_rows(rows, druid_query, len(plan.totals_intervals))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise BackendError("The analytics backend answered in an unexpected shape.") from exc

    def ready(self) -> bool:
        return self.client.ready()


# Druid's bucket timestamps (`2019-06-01T00:00:00.000+03:00`) → epoch ms, shared by every
# request as dashboards ask for the same buckets; emptied when it grows past the cap.
_PARSED: dict[str, int] = {}
_PARSED_CAP = 100_000


def _epoch_ms(stamp: str) -> int:
    bucket = _PARSED.get(stamp)
    if bucket is None:
        if len(_PARSED) >= _PARSED_CAP:
            _PARSED.clear()
        bucket = _PARSED[stamp] = int(datetime.fromisoformat(stamp).timestamp() * 1000)
    return bucket


def backend_rows(rows: list[dict[str, Any]], keys: tuple[str, ...], grouped: bool) -> Iterator[BackendRow]:
    body = "event" if grouped else "result"
    for row in rows:
        yield [_epoch_ms(row["timestamp"]), *map(row[body].get, keys)]


def totals_rows(rows: list[Any], query: DruidQuery, intervals: int) -> list[Sequence[Any] | None]:
    """The one `all` row of a totals timeseries → each interval's metric values (None: no row)."""
    if not rows:
        return [None] * intervals
    [row] = rows
    values = [row["result"].get(key) for key in query.value_keys]
    width = len(values) // intervals
    return [values[index * width : (index + 1) * width] for index in range(intervals)]


def plan_rows(rows: list[Any], query: DruidQuery, plan: ResultPlan) -> list[BackendRow]:
    """Druid's answer → backend rows: arrays for groupBy, result objects for timeseries."""
    if plan.grouped:
        return array_rows(rows, query, plan.bucket_starts_ms[0])
    return list(backend_rows(rows, query.value_keys, grouped=False))


def array_rows(rows: list[Any], query: DruidQuery, start_ms: int) -> list[BackendRow]:
    """groupBy rows answered as arrays (`resultAsArray`) → backend rows; `start_ms` stamps the
    rows of granularity `all`, which carry no timestamp."""
    positions = query.value_positions
    if query.timestamp_position == 0 and positions == tuple(range(1, len(positions) + 1)):
        # [timestamp, values in plan order] is already a backend row: the rows are kept, not copied.
        _check_arrays(rows, 1 + len(positions))
        return rows
    # Rows in another shape (objects, short arrays) fail as their values are picked, with a
    # KeyError or IndexError, which the caller maps.
    if rows and not isinstance(rows[0], list):
        raise TypeError("groupBy rows must be arrays")
    if query.timestamp_position is None:
        pick = itemgetter(*positions) if len(positions) > 1 else (lambda row: (row[positions[0]],))
        return [(start_ms, *pick(row)) for row in rows]
    return list(map(itemgetter(query.timestamp_position, *positions), rows))


def _check_arrays(rows: list[Any], width: int) -> None:
    # Two passes in C over the types and lengths, rather than picking each row's values in Python.
    if not set(map(type, rows)) <= {list} or not set(map(len, rows)) <= {width}:
        raise TypeError(f"groupBy rows must be arrays of {width} values")
