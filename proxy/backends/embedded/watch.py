"""Stop a running DuckDB query at its deadline or once its caller has hung up.

DuckDB runs a query on the calling thread (and its own workers) and releases the GIL, so a
small thread per query watches it: every `poll_secs` it asks whether the caller has gone, and at
the deadline or on a hang-up it interrupts the query's connection. An interrupt only reaches a
query that is running; one sent in the instant before DuckDB starts would be lost, so the watch
repeats it every `poll_secs` until the worker says the query has returned. The worker closes the
cursor only after `__exit__`, so no interrupt ever lands on a closed one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from proxy.runtime.disconnect import ClientGone, never_gone

Reason = Literal["deadline", "disconnected"]


class QueryStop:
    """A context manager around one query; `reason` says why it interrupted the query, if it did."""

    def __init__(
        self,
        interrupt: Callable[[], None],
        budget_secs: float,
        client_gone: ClientGone = never_gone,
        poll_secs: float = 0.05,
    ) -> None:
        self.reason: Reason | None = None
        self._interrupt = interrupt
        self._deadline = time.monotonic() + budget_secs
        self._client_gone = client_gone
        self._poll_secs = poll_secs
        self._returned = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="embedded-query-stop", daemon=True)

    def __enter__(self) -> QueryStop:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._returned.set()

    def _watch(self) -> None:
        while not self._returned.wait(min(self._poll_secs, max(0.0, self._remaining()))):
            reason = self._why_stop()
            if reason is not None:
                self.reason = reason
                self._interrupt_until_returned()
                return

    def _remaining(self) -> float:
        return self._deadline - time.monotonic()

    def _why_stop(self) -> Reason | None:
        if self._remaining() <= 0:
            return "deadline"
        return "disconnected" if self._client_gone() else None

    def _interrupt_until_returned(self) -> None:
        while True:
            with self._lock:
                if self._returned.is_set():
                    return
                self._interrupt()
            self._returned.wait(self._poll_secs)
