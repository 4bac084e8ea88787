"""Watch in-flight Druid queries and cut each one short past its deadline or once its caller left.

The worker thread blocks on the broker's socket while Druid works, so one watcher thread per
process polls every registered query (each every `poll_secs`, and at its deadline); it is
started with the first query and again in a forked child, as threads do not survive a fork.
When the deadline passes or the caller hangs up before the worker has the whole answer
(`finish()`), or when the worker calls `expire()`, the watch fires once: it cuts the response
stream if one is attached (the worker's read returns at once) and then asks Druid to cancel the
query on a thread of its own, so a slow broker never holds up the watch of other queries.
Druid honours a cancel only while the query still runs on the data servers; once the broker
streams results, cutting our side of the connection is what stops it. Before any response
arrives the worker is bounded by its read timeout, which is the remaining budget.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Literal

from proxy.runtime.disconnect import ClientGone, never_gone

Reason = Literal["deadline", "disconnected"]

log = logging.getLogger(__name__)


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
        now = time.monotonic()
        self.deadline = now + budget_secs
        self.reason: Reason | None = None
        self._cancel = cancel
        self._client_gone = client_gone
        self._poll_secs = poll_secs
        self._next_poll = now + poll_secs
        self._cancel_grace_secs = cancel_grace_secs
        self._cut: Callable[[], None] | None = None
        self._cancel_sent: threading.Event | None = None
        self._finished = False
        self._lock = threading.Lock()
        self._watcher = _watcher()

    def __enter__(self) -> QueryWatch:
        self._watcher.add(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._watcher.discard(self)
        self.finish()
        with self._lock:
            cancel_sent = self._cancel_sent
        if cancel_sent is not None:
            # Let the cancel reach Druid before the caller hears back (and maybe retries);
            # a broker that does not answer costs at most the grace.
            cancel_sent.wait(self._cancel_grace_secs)

    def remaining(self) -> float:
        """Seconds left before the deadline, never negative."""
        return max(0.0, self.deadline - time.monotonic())

    def attach(self, cut: Callable[[], None]) -> None:
        """How to abort the response now streaming; called at once if the watch already fired."""
        with self._lock:
            fired = self.reason is not None
            if not fired:
                self._cut = cut
        if fired:
            cut()

    def finish(self) -> Reason | None:
        """The answer is in: nothing is left to cut, and the watch no longer fires by itself
        (only `expire` fires it). Why it fired before, if it did."""
        with self._lock:
            self._finished = True
            self._cut = None
            return self.reason

    def expire(self) -> None:
        """The worker saw the deadline pass (its own timeout or Druid's 504): fire now."""
        self._fire("deadline", even_if_finished=True)

    def due(self) -> float:
        """When the watcher should next look at this query (`inf`: never again)."""
        if self._finished or self.reason is not None:
            return math.inf
        return min(self.deadline, self._next_poll)

    def check(self) -> None:
        """Fire if the deadline has passed or, at each poll, if the caller has gone."""
        now = time.monotonic()
        if now >= self.deadline:
            self._fire("deadline")
        elif now >= self._next_poll:
            self._next_poll = now + self._poll_secs
            if self._client_gone():
                self._fire("disconnected")

    def _fire(self, reason: Reason, even_if_finished: bool = False) -> None:
        with self._lock:
            if self.reason is not None or (self._finished and not even_if_finished):
                return
            self.reason = reason
            cut, self._cut = self._cut, None
            cancel_sent = self._cancel_sent = threading.Event()
        if cut is not None:
            cut()
        threading.Thread(
            target=self._send_cancel, args=(cancel_sent,), name="druid-query-cancel", daemon=True
        ).start()

    def _send_cancel(self, sent: threading.Event) -> None:
        try:
            self._cancel()
        finally:
            sent.set()


class _Watcher:
    """One thread that looks at every registered query when the earliest of them is due."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._watches: set[QueryWatch] = set()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def add(self, watch: QueryWatch) -> None:
        with self._changed:
            self._watches.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="druid-query-watch", daemon=True)
                self._thread.start()
            elif watch.due() < self._wake_at:
                self._changed.notify()

    def discard(self, watch: QueryWatch) -> None:
        with self._changed:
            self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            for watch in self._due_watches():
                try:
                    watch.check()
                except Exception:
                    # One failing probe must not stop the watch of every other query.
                    log.exception("watching a druid query failed")

    def _due_watches(self) -> list[QueryWatch]:
        """Sleeps until a registered query is due (or another is added), then those due."""
        with self._changed:
            while True:
                now = time.monotonic()
                self._wake_at = min((watch.due() for watch in self._watches), default=math.inf)
                if self._wake_at <= now:
                    return [watch for watch in self._watches if watch.due() <= now]
                self._changed.wait(None if self._wake_at == math.inf else self._wake_at - now)


# By process id: a forked child finds no watcher of its own and starts one.
_WATCHERS: dict[int, _Watcher] = {}


def _watcher() -> _Watcher:
    pid = os.getpid()
    watcher = _WATCHERS.get(pid)
    if watcher is None:
        watcher = _WATCHERS.setdefault(pid, _Watcher())  # atomic: racing threads share one
    return watcher
