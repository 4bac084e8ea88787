"""Watch one in-flight Druid query and cut it short past its deadline or once its caller left.

The worker thread blocks inside `requests` while Druid works, so a small watcher thread per
query wakes every `poll_secs`. When the deadline passes or the caller hangs up before the
worker has the whole answer (`finish()`), or when the worker calls `expire()`, the watch fires
once: it cuts the response stream if one is attached (the
worker's read returns at once) and then asks Druid to cancel the query. Druid honours a
cancel only while the query still runs on the data servers; once the broker streams results,
cutting our side of the connection is what stops it. Before any response arrives the worker
is bounded by its read timeout, which is the remaining budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from proxy.disconnect import ClientGone, never_gone

Reason = Literal["deadline", "disconnected"]


class QueryWatch:
    """A context manager around one Druid call; `reason` says why it fired, if it did."""

    def __init__(
        self,
        budget_secs: float,
        cancel: Callable[[], None],
        client_gone: ClientGone = never_gone,
        poll_secs: float = 0.05,
        cancel_grace_secs: float = 0.25,
    ) -> None:
        self.deadline = time.monotonic() + budget_secs
        self.reason: Reason | None = None
        self._cancel = cancel
        self._client_gone = client_gone
        self._poll_secs = poll_secs
        self._cancel_grace_secs = cancel_grace_secs
        self._cut: Callable[[], None] | None = None
        self._finished = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="druid-query-watch", daemon=True)

    def __enter__(self) -> QueryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._wake.set()
        if self.reason is not None:
            # Let the cancel reach Druid before the caller hears back (and maybe retries);
            # a broker that does not answer costs at most the grace.
            self._thread.join(self._cancel_grace_secs)

    def remaining(self) -> float:
        """Seconds left before the deadline, never negative."""
        return max(0.0, self.deadline - time.monotonic())

    def attach(self, cut: Callable[[], None]) -> None:
        """How to abort the response now streaming; the watch calls it when it fires."""
        with self._lock:
            self._cut = cut

    def finish(self) -> Reason | None:
        """The answer is in: the watch no longer fires by itself (only `expire` fires it).
        Why it fired before, if it did."""
        with self._lock:
            self._finished = True
            return self.reason

    def expire(self) -> None:
        """The worker saw the deadline pass (its own timeout or Druid's 504): fire now."""
        with self._lock:
            if self.reason is None:
                self.reason = "deadline"
        self._wake.set()

    def _fire(self, reason: Reason) -> None:
        with self._lock:
            if self.reason is None and not self._finished:
                self.reason = reason

    def _next_wait(self) -> float | None:
        # Once the answer is in, only `expire` or the end of the call wakes the watch.
        return None if self._finished else min(self._poll_secs, self.remaining())

    def _watch(self) -> None:
        while not self._wake.wait(self._next_wait()):
            if self.remaining() <= 0:
                self._fire("deadline")
            elif self._client_gone():
                self._fire("disconnected")
            if self.reason is not None:
                break
        if self.reason is None:
            return
        with self._lock:
            cut = self._cut
        if cut is not None:
            cut()
        self._cancel()
