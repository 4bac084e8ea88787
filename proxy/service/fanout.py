"""The backend queries of one report, side by side: its rows, its comparison's rows, its totals.

The rows run on the request's own thread and each extra part on a small pool of the worker,
all within the request's deadline, at most `at_once` of them running at a time (the
concurrency slots the request holds: an organization never has more backend queries running
than its slots). Once one part fails the others are told their caller is gone (so Druid
cancels them and DuckDB interrupts them; one still waiting never starts, nor once the caller
has gone), and the first failure is raised.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from proxy.backends.base import Backend, Scope
from proxy.errors import BackendTimeout, ClientDisconnected
from proxy.query.plan import ResultPlan
from proxy.query.render import Answers

# A report has at most two extra parts (comparison, totals); this covers a worker's threads
# several times over, and a part that waits for a thread still counts against its deadline.
EXTRA_PART_THREADS = 8

Part = Callable[[Scope], Any]


class Fanout:
    """Runs a plan's parts on one backend, the extra ones concurrently with the main one."""

    def __init__(self, backend: Backend, threads: int = EXTRA_PART_THREADS) -> None:
        self.backend = backend
        # Threads start on first use, so a pool built before gunicorn forks is still usable.
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="report-part")

    def parts(self, plan: ResultPlan) -> dict[str, Part]:
        """The plan's parts by their `Answers` field, the rows first."""
        parts: dict[str, Part] = {"rows": lambda scope: self.backend.execute(plan, scope)}
        comparison = plan.comparison
        if comparison is not None:
            parts["comparison_rows"] = lambda scope: self.backend.execute(comparison, scope)
        if plan.totals_intervals:
            parts["totals"] = lambda scope: self.backend.totals(plan, scope)
        return parts

    def width(self, plan: ResultPlan) -> int:
        """How many backend queries the plan runs: the slots it could use at once."""
        return 1 + (plan.comparison is not None) + bool(plan.totals_intervals)

    def answers(self, plan: ResultPlan, scope: Scope, at_once: int) -> Answers:
        """Everything the backend answers for the plan, at most `at_once` queries at a time."""
        return Answers(**run_together(self.pool, self.parts(plan), scope, at_once))


def run_together(
    pool: ThreadPoolExecutor, parts: dict[str, Part], scope: Scope, at_once: int
) -> dict[str, Any]:
    """Each part's result by name: the first part here, the others on `pool`, at most `at_once`
    running at a time."""
    names = list(parts)
    if len(names) == 1:
        return {names[0]: parts[names[0]](scope)}
    failures: list[BaseException] = []
    failed = threading.Event()
    turns = threading.BoundedSemaphore(max(1, at_once))
    # Each part in a copy of this thread's context: what the caller set there (the result
    # cache's recording of the backend's answers) applies to every part.
    futures: dict[str, Future[Any]] = {
        name: pool.submit(
            contextvars.copy_context().run,
            _guarded,
            parts[name],
            _part_scope(scope, name, failed),
            failures,
            failed,
            turns,
        )
        for name in names[1:]
    }
    first = _guarded(parts[names[0]], _part_scope(scope, None, failed), failures, failed, turns)
    results = {names[0]: first}
    results.update((name, future.result()) for name, future in futures.items())
    if failures:
        raise failures[0]
    return results


def _part_scope(scope: Scope, name: str | None, failed: threading.Event) -> Scope:
    """The request's scope for one part: gone once a sibling failed; an extra part's own query id."""
    query_id = scope.query_id if name is None else f"{scope.query_id}-{name}"
    return replace(scope, client_gone=lambda: failed.is_set() or scope.client_gone(), query_id=query_id)


def _guarded(
    part: Part,
    scope: Scope,
    failures: list[BaseException],
    failed: threading.Event,
    turns: threading.Semaphore,
) -> Any:
    # Failures are kept in the order they happened: the siblings' own (stopped because of the
    # first) come after it.
    try:
        if not turns.acquire(timeout=max(0.0, scope.remaining_secs())):
            raise BackendTimeout("The request's time budget ran out before all its queries could run.")
        try:
            if failed.is_set():  # a sibling failed while it waited: that failure is the answer
                return None
            if scope.client_gone():
                raise ClientDisconnected("The caller left before this query's turn came.")
            return part(scope)
        finally:
            turns.release()
    except BaseException as exc:
        failures.append(exc)
        failed.set()
        return None
