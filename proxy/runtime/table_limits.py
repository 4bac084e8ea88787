"""The limits' default store: counters shared by every worker process on the host, in a file that
every worker maps into memory (`proxy.runtime.limit_table`).

Every request passes the limiter twice (admit, release): here an admit and its release are a few
memory reads and writes under one lock. A running query counts once on each of its keys, in its
own process's column. The slots of a process that died (SIGKILL, OOM, gunicorn's worker timeout)
are dropped when a key looks full, when the process table is full, and by gunicorn's
`child_exit` hook; those of a live process that took no slot for longer than any query lives are
leaked, and dropped too.

A limiter that cannot use its file, or finds no room in it for a key or for its process, admits
the request and logs.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from proxy.runtime.limit_table import (
    WINDOW_NS,
    Shape,
    Table,
    prepare,
    release_process_unmapped,
)
from proxy.runtime.limits import Admission, Limits, Release, Rule, key_digests, organization_digest, rules

log = logging.getLogger(__name__)

_WARN_EVERY_SECS = 60.0
_DEFAULT_SHAPE = Shape()
_NS_PER_SEC = 10**9


class _Slot(NamedTuple):
    positions: tuple[int, ...]
    entry: int
    generation: int


class TableLimiter(Admission):
    """Admits a query or raises TooManyRequests; the state is shared through one mapped file."""

    def __init__(
        self,
        path: Path,
        limits: Limits,
        clock: Callable[[], float] = time.time,
        *,
        shape: Shape = _DEFAULT_SHAPE,
    ) -> None:
        self._path = path
        self.limits = limits
        self._clock = clock
        self._shape = shape
        self._rules = rules(limits)
        self._counts_slots = bool(limits.concurrent_per_org or limits.concurrent_per_principal)
        self._table: Table | None = None
        self._warned_at = -math.inf
        if not limits.off:
            try:
                # The file exists before the first request races for it; mapped only by the
                # workers, never by gunicorn's master, which builds a Limiter in `child_exit`.
                prepare(self._path, self._shape)
            except OSError:
                log.exception("rate limiter file unusable; requests are admitted unlimited until it is")

    def count_invalid(self, organization: str, principal: str) -> None:
        """Charge one invalid request to the principal's budget of them."""
        per_min = self.limits.invalid_per_principal_per_min
        if not per_min:
            return
        try:
            table = self._local_table()
            with table.lock:
                now = _nanoseconds(self._clock())
                position = table.locate(key_digests(organization, principal)[2], now)
                if position is not None:
                    table.tats[position] = _next_arrival(table.tats[position], per_min, now)
        except OSError:
            log.exception("rate limiter unavailable; an invalid request went uncounted")

    def release_process(self, pid: int) -> int:
        """Drop every slot a (dead) process holds; the number dropped."""
        if self.limits.off:
            return 0
        try:
            return release_process_unmapped(self._path, self._shape, pid)
        except OSError:
            log.exception("could not drop the limiter slots of process %d", pid)
            return 0

    def readiness(self) -> str:
        """A host's own table is always there (a limiter that cannot use it admits unlimited)."""
        return "local"

    def slots_held(self, organization: str) -> int:
        """Running queries counted against an organization (for tests and operators)."""
        if self.limits.off:
            return 0
        table = self._local_table()
        with table.lock:
            position = table.find(organization_digest(organization))
            return 0 if position is None else table.count(position)

    def _local_table(self) -> Table:
        # A table opened by the parent before a fork shares its lock's description: reopen.
        table = self._table
        if table is None or table.pid != os.getpid():
            table = self._table = Table.open(self._path, self._shape)
        return table

    def _acquire(self, organization: str, principal: str, rates: bool, hold_slot: bool) -> Release | None:
        if self.limits.off:
            return None
        try:
            table = self._local_table()
            with table.lock:
                slot = self._charge(table, organization, principal, rates, hold_slot and self._counts_slots)
            return None if slot is None else functools.partial(self._release, slot)
        except OSError as exc:
            # Once a minute: a full disk or a read-only data dir stays so for many requests.
            self._warn(f"rate limiter unavailable ({exc}); admitting requests unlimited")
            return None

    def _release(self, slot: _Slot) -> None:
        try:
            table = self._local_table()
            with table.lock:
                table.give_back(*slot)
        except OSError:
            log.exception("could not release a limiter slot; it goes when its process does")

    def _charge(
        self, table: Table, organization: str, principal: str, rates: bool, hold_slot: bool
    ) -> _Slot | None:
        now = _nanoseconds(self._clock())
        located = self._locate(table, organization, principal, rates, hold_slot, now)
        entry = table.own_entry() if hold_slot else None
        if located is None or (hold_slot and entry is None):
            self._warn("no room in the limiter's tables; admitting the request unlimited")
            return None
        arrivals = self._arrivals(table, located, now) if rates else []
        slot = self._take_slot(table, located, entry, now) if entry is not None else None
        for position, tat in arrivals:
            table.tats[position] = tat
        return slot

    def _locate(
        self, table: Table, organization: str, principal: str, rates: bool, hold_slot: bool, now: int
    ) -> list[tuple[Rule, int]] | None:
        """The keys this request counts against, with their positions; None if one finds none."""
        located = []
        for rule, digest in zip(self._rules, key_digests(organization, principal)):
            if rule.applies(rates, hold_slot):
                position = table.locate(digest, now)
                if position is None:
                    return None
                located.append((rule, position))
        return located

    def _arrivals(self, table: Table, located: list[tuple[Rule, int]], now: int) -> list[tuple[int, int]]:
        """Each rate-limited key's next arrival time, or TooManyRequests if one is over its rate."""
        arrivals = []
        for rule, position in located:
            if rule.per_min:
                tat = _next_arrival(table.tats[position], rule.per_min, now)
                if tat - now > WINDOW_NS:
                    raise rule.over_rate(math.ceil((tat - now - WINDOW_NS) / _NS_PER_SEC))
                if not rule.checked_only:
                    arrivals.append((position, tat))
        return arrivals

    def _take_slot(self, table: Table, located: list[tuple[Rule, int]], entry: int, now: int) -> _Slot:
        refusal = _refusal(table, located)
        if refusal and self._reclaim(table, now):
            refusal = _refusal(table, located)
        if refusal:
            raise refusal.full()
        positions = tuple(position for rule, position in located if not rule.checked_only)
        return _Slot(positions, entry, table.take(positions, entry, now))

    def _reclaim(self, table: Table, now: int) -> bool:
        """Drop the slots of dead processes and leaked ones; whether any went."""
        dead, leaked = table.reclaim(now, _nanoseconds(self.limits.stale_slot_secs))
        if dead or leaked:
            log.warning("reclaimed limiter slots: %d dead processes, %d leaked slots", dead, leaked)
        return bool(dead or leaked)

    def _warn(self, message: str) -> None:
        # Once a minute: a full table stays full for many requests.
        if time.monotonic() - self._warned_at >= _WARN_EVERY_SECS:
            self._warned_at = time.monotonic()
            log.warning(message)


def _refusal(table: Table, located: list[tuple[Rule, int]]) -> Rule | None:
    """The first key whose slots are all taken."""
    for rule, position in located:
        if rule.concurrent and table.count(position) >= rule.concurrent:
            return rule
    return None


def _nanoseconds(seconds: float) -> int:
    return round(seconds * _NS_PER_SEC)


def _next_arrival(stored: int, per_min: int, now: int) -> int:
    tat = now if stored - now > WINDOW_NS else stored  # the clock jumped back: reset
    # Rounded down, so `per_min` intervals never sum to more than the window.
    return max(tat, now) + WINDOW_NS // per_min
