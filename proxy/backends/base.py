"""The one small interface both engines implement behind the service."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from proxy.query.plan import BackendRow, ResultPlan
from proxy.runtime.disconnect import ClientGone, never_gone


class Backend(Protocol):
    """Runs a planned query scoped to one organization; everything else is shared."""

    name: str

    def execute(
        self,
        plan: ResultPlan,
        organization_id: str,
        request_id: str,
        client_gone: ClientGone = never_gone,
        budget_secs: float | None = None,
    ) -> Iterable[BackendRow]:
        """Rows for the plan: bucket start in epoch ms, then group and metric values in order.

        `client_gone` says whether the caller has hung up; a backend may stop early then.
        `budget_secs` is what the request has left of its time budget (None: all of it).
        """

    def explain(self, plan: ResultPlan, organization_id: str, request_id: str) -> Any:
        """The backend query that `execute` would run, as JSON-ready data."""

    def ready(self) -> bool:
        """Whether the engine answers queries right now."""
