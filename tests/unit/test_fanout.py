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
    with ThreadPoolExecutor(max_workers=2) as executor:
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
    assert run_together(pool, parts, _scope()) == {"rows": "rows", "totals": "totals"}


def test_a_failed_part_stops_the_others_and_its_error_is_raised(pool: ThreadPoolExecutor) -> None:
    seen_gone = threading.Event()

    def rows(scope: Scope) -> None:
        # Stands in for a backend watching `client_gone` while its query runs.
        for _ in range(500):
            if scope.client_gone():
                seen_gone.set()
                raise ClientDisconnected("stopped")
            threading.Event().wait(0.01)

    def totals(scope: Scope) -> None:
        raise BackendTimeout("too slow")

    with pytest.raises(BackendTimeout):
        run_together(pool, {"rows": rows, "totals": totals}, _scope())
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
    )
    assert ids == {
        "rows": scope.query_id,
        "comparison_rows": f"{scope.query_id}-comparison_rows",
        "totals": f"{scope.query_id}-totals",
    }


def test_a_single_part_runs_with_the_request_scope_itself(pool: ThreadPoolExecutor) -> None:
    scope = _scope()
    assert run_together(pool, {"rows": lambda s: s}, scope) == {"rows": scope}
