"""A report's parts run side by side within the request's scope, and the first failure wins."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from proxy.backends.base import Scope
from proxy.errors import BackendTimeout, ClientDisconnected
from proxy.service.fanout import run_together


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=3) as executor:
        yield executor


def _scope() -> Scope:
    return Scope.starting_now("org", "req-1", 5.0)


def test_parts_run_at_the_same_time(pool: ThreadPoolExecutor) -> None:
    # Each part waits for the other to start: run one after the other, both would time out.
    started = {name: threading.Event() for name in ("rows", "totals")}

    def part(name: str, other: str) -> Any:
        def run(scope: Scope) -> str:
            started[name].set()
            assert started[other].wait(5), f"{other} did not run beside {name}"
            return name

        return run

    parts = {"rows": part("rows", "totals"), "totals": part("totals", "rows")}
    assert run_together(pool, parts, _scope(), at_once=2) == {"rows": "rows", "totals": "totals"}


def test_a_failed_part_stops_the_others_and_its_error_is_raised(pool: ThreadPoolExecutor) -> None:
    seen_gone, rows_running = threading.Event(), threading.Event()

    def rows(scope: Scope) -> None:
        # Stands in for a backend watching `client_gone` while its query runs.
        rows_running.set()
        for _ in range(500):
            if scope.client_gone():
                seen_gone.set()
                raise ClientDisconnected("stopped")
            threading.Event().wait(0.01)

    def totals(scope: Scope) -> None:
        rows_running.wait(5)
        raise BackendTimeout("too slow")

    with pytest.raises(BackendTimeout):
        run_together(pool, {"rows": rows, "totals": totals}, _scope(), at_once=2)
    assert seen_gone.is_set()


def test_extra_parts_name_their_own_backend_query(pool: ThreadPoolExecutor) -> None:
    scope = _scope()
    ids = run_together(
        pool,
        {
            "rows": lambda s: s.query_id,
            "comparison_rows": lambda s: s.query_id,
            "totals": lambda s: s.query_id,
        },
        scope,
        at_once=3,
    )
    assert ids == {
        "rows": scope.query_id,
        "comparison_rows": f"{scope.query_id}-comparison_rows",
        "totals": f"{scope.query_id}-totals",
    }


def test_a_single_part_runs_with_the_request_scope_itself(pool: ThreadPoolExecutor) -> None:
    scope = _scope()
    assert run_together(pool, {"rows": lambda s: s}, scope, at_once=1) == {"rows": scope}


class Overlap:
    """Parts that note how many of them ran at the same time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def part(self, name: str) -> Any:
        def run(scope: Scope) -> str:
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            threading.Event().wait(0.2)  # long enough for the others to start beside it
            with self.lock:
                self.running -= 1
            return name

        return run


@pytest.mark.parametrize("at_once", [1, 2, 3])
def test_no_more_parts_run_at_a_time_than_the_slots_held(pool: ThreadPoolExecutor, at_once: int) -> None:
    overlap = Overlap()
    names = ("rows", "comparison_rows", "totals")
    parts = {name: overlap.part(name) for name in names}
    assert run_together(pool, parts, _scope(), at_once) == {name: name for name in names}
    assert overlap.most == at_once


def test_a_part_still_waiting_for_its_turn_never_runs_once_one_failed(pool: ThreadPoolExecutor) -> None:
    ran: list[str] = []

    def rows(scope: Scope) -> None:
        ran.append("rows")
        raise BackendTimeout("too slow")

    def totals(scope: Scope) -> None:
        ran.append("totals")

    with pytest.raises(BackendTimeout):
        run_together(pool, {"rows": rows, "totals": totals}, _scope(), at_once=1)
    # Whichever took the one turn first: if the rows failed first, the totals never ran.
    assert ran in (["rows"], ["totals", "rows"])


def test_a_turn_that_does_not_come_within_the_deadline_is_a_timeout(pool: ThreadPoolExecutor) -> None:
    def slow(scope: Scope) -> str:
        # Stands in for a backend query that stops once its caller is gone.
        for _ in range(500):
            if scope.client_gone():
                raise ClientDisconnected("stopped")
            threading.Event().wait(0.01)
        return "slow"

    scope = Scope.starting_now("org", "req-1", 0.2)
    with pytest.raises(BackendTimeout, match="time budget ran out"):
        run_together(pool, {"rows": slow, "totals": slow}, scope, at_once=1)


def test_no_part_starts_once_the_caller_has_left(pool: ThreadPoolExecutor) -> None:
    ran: list[str] = []

    def part(name: str) -> Any:
        def run(scope: Scope) -> str:
            ran.append(name)
            return name

        return run

    scope = Scope.starting_now("org", "req-1", 5.0, client_gone=lambda: True)
    with pytest.raises(ClientDisconnected):
        run_together(pool, {"rows": part("rows"), "totals": part("totals")}, scope, at_once=1)
    assert ran == []
