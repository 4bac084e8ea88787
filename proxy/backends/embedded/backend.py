"""The embedded backend: translate the plan to SQL, run it on the current DuckDB generation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import duckdb

from proxy.backends.base import Scope
from proxy.backends.embedded.storage import Reader
from proxy.backends.embedded.translator import SqlQuery, translate
from proxy.errors import BackendError, BackendTimeout, BackendUnavailable
from proxy.query.plan import BackendRow, ResultPlan
from proxy.settings import Settings

log = logging.getLogger(__name__)


class EmbeddedBackend:
    """Runs planned queries on the embedded DuckDB engine of `settings.embedded_dir`."""

    name = "embedded"

    def __init__(self, settings: Settings) -> None:
        self.deadline_secs = settings.request_timeout_secs
        self.reader = Reader(settings.embedded_dir)

    def explain(self, plan: ResultPlan, scope: Scope) -> Any:
        return translate(plan, scope.organization_id).explain()

    def execute(self, plan: ResultPlan, scope: Scope) -> Sequence[BackendRow]:
        # The scope's deadline and caller probe go unused: a local query is bounded by its own
        # deadline interrupt (the full request timeout).
        query = translate(plan, scope.organization_id)
        try:
            rows = self._run(query)
        except duckdb.InterruptException as exc:
            raise BackendTimeout(f"The query ran longer than {self.deadline_secs:g} s.") from exc
        except (duckdb.IOException, OSError) as exc:
            log.exception("embedded engine unavailable in request %s", scope.request_id)
            raise BackendUnavailable("The embedded engine cannot open its data.") from exc
        except duckdb.Error as exc:
            log.exception("embedded query failed in request %s: %s", scope.request_id, query.sql)
            raise BackendError("The embedded engine failed to answer.") from exc
        return rows  # (bucket, groups..., metrics...) tuples are backend rows as they are

    def _run(self, query: SqlQuery) -> list[tuple[Any, ...]]:
        with self.reader.cursor() as cursor:
            if cursor is None:
                return []  # nothing loaded yet: every bucket is empty
            timer = threading.Timer(self.deadline_secs, cursor.interrupt)
            timer.start()
            try:
                return cursor.execute(query.sql, query.parameters).fetchall()
            finally:
                timer.cancel()

    def ready(self) -> bool:
        try:
            return self.reader.ready()
        except (duckdb.Error, OSError):
            log.exception("embedded engine not ready")
            return False
