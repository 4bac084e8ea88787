"""The one small interface both engines implement behind the service."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy.query.plan import BackendRow, ResultPlan
from proxy.runtime.disconnect import ClientGone, never_gone


@dataclass(frozen=True)
class Scope:
    """What one backend call runs for: the organization, the request, its deadline, its caller,
    and the backend query's own id."""

    organization_id: str
    request_id: str  # the caller's (or a new) id, for logs only: callers choose it
    # On the `time.perf_counter()` clock: the request's arrival plus its time budget.
    deadline: float
    client_gone: ClientGone = never_gone
    # Names the query to the backend (Druid's `queryId`, which a cancel names): unguessable and
    # new for every call, so no caller can name another's query.
    query_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def starting_now(
        cls, organization_id: str, request_id: str, budget_secs: float, client_gone: ClientGone = never_gone
    ) -> Scope:
        """A scope whose budget starts counting now."""
        return cls(organization_id, request_id, time.perf_counter() + budget_secs, client_gone)

    def remaining_secs(self) -> float:
        """What is left of the request's time budget (zero or less: nothing)."""
        return self.deadline - time.perf_counter()


class Backend(Protocol):
    """Runs a planned query scoped to one organization; everything else is shared."""

    name: str

    def execute(self, plan: ResultPlan, scope: Scope) -> Sequence[BackendRow]:
        """Rows for the plan: bucket start in epoch ms, then group and metric values in order.

        A backend may stop early once `scope.client_gone()` says the caller has hung up.
        """

    def explain(self, plan: ResultPlan, scope: Scope) -> Any:
        """The backend query that `execute` would run, as JSON-ready data."""

    def totals(self, plan: ResultPlan, scope: Scope) -> Sequence[Sequence[Any] | None]:
        """Per interval of `plan.totals_intervals`, each metric over all its matching sessions
        (None: no sessions), from one backend query."""

    def explain_totals(self, plan: ResultPlan, scope: Scope) -> Any:
        """The backend query that `totals` would run, as JSON-ready data."""

    def ready(self) -> bool:
        """Whether the engine answers queries right now."""
