"""Rate and concurrency limits per organization and per (organization, principal): one interface
(`Limiter`) over two stores of the counters, chosen by `build_limiter` from the settings.

- `TableLimiter`, the default: shared by every worker process on the host, not across hosts.
- `proxy.runtime.shared_limits.SharedLimiter` (`PROXY_LIMITS_DATABASE_URL`): PostgreSQL, shared
  by every host that names the same database.

Both read one rule table (`rules`), so the limits, their refusals and Retry-After are the same.

Every request passes the limiter twice (admit, release), so the table's counters live in a file that
every worker maps into memory (`proxy.runtime.limit_table`): an admit and its release are a few
memory reads and writes under one lock, where a database would cost two write transactions per
request.

- Rates use GCRA, a token bucket held as one "theoretical arrival time" per key: a key at
  `per_min` admits a burst of `per_min` and then one request every `60 / per_min` seconds.
- Invalid requests have a rate of their own per principal, charged when a request fails
  validation (`count_invalid`) and checked before the next one's body is read (`charge`): a
  credential that sends many invalid bodies is refused without its bodies costing CPU.
- Concurrency: a running query counts once on its organization's key and once on its
  principal's, in its own process's column. Every exit path of `admit` takes it back; the
  slots of a process that died (SIGKILL, OOM, gunicorn's worker timeout) are dropped when a key
  looks full, when the process table is full, and by gunicorn's `child_exit` hook; those of a
  live process that took no slot for longer than any query lives are leaked, and dropped too.

A limiter that cannot use its file, or finds no room in it for a key or for its process, admits
the request and logs: limits protect the backend, they are not worth an outage of their own.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from proxy.errors import TooManyRequests
from proxy.runtime.limit_table import (
    DIGEST_SIZE,
    WINDOW_NS,
    Shape,
    Table,
    prepare,
    process_alive,
    process_identity,
    release_process_unmapped,
)
from proxy.settings import Settings

__all__ = [
    "Limiter",
    "Limits",
    "Rule",
    "TableLimiter",
    "build_limiter",
    "invalid_digest",
    "key_digests",
    "organization_digest",
    "principal_digest",
    "process_alive",
    "process_identity",
    "rules",
]

log = logging.getLogger(__name__)

_WARN_EVERY_SECS = 60.0
_DEFAULT_SHAPE = Shape()
_NS_PER_SEC = 10**9


@dataclass(frozen=True)
class Limits:
    """The four admission limits; 0 turns one off. Their defaults live in `Settings` alone."""

    per_org_per_min: int
    per_principal_per_min: int
    concurrent_per_org: int
    concurrent_per_principal: int
    # A process that took no slot for this long yet holds some has leaked them: no query lives
    # that long.
    stale_slot_secs: float = 300.0
    invalid_per_principal_per_min: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits the `PROXY_*` settings ask for."""
        return cls(
            per_org_per_min=settings.rate_limit_per_org_per_min,
            per_principal_per_min=settings.rate_limit_per_principal_per_min,
            concurrent_per_org=settings.max_concurrent_per_org,
            concurrent_per_principal=settings.max_concurrent_per_principal,
            stale_slot_secs=2 * settings.request_timeout_secs + 60,
            invalid_per_principal_per_min=settings.rate_limit_invalid_per_principal_per_min,
        )

    @property
    def off(self) -> bool:
        """Whether every limit is off, so the file need not be touched at all."""
        return not (
            self.per_org_per_min
            or self.per_principal_per_min
            or self.concurrent_per_org
            or self.concurrent_per_principal
            or self.invalid_per_principal_per_min
        )


def organization_digest(organization: str) -> bytes:
    """The digest of an organization's key."""
    return hashlib.blake2b(f"org\0{organization}".encode(), digest_size=DIGEST_SIZE).digest()


def principal_digest(organization: str, principal: str) -> bytes:
    """The digest of a principal's key within an organization."""
    return hashlib.blake2b(
        f"principal\0{organization}\0{principal}".encode(), digest_size=DIGEST_SIZE
    ).digest()


def invalid_digest(organization: str, principal: str) -> bytes:
    """The digest of a principal's invalid-request budget within an organization."""
    return hashlib.blake2b(f"invalid\0{organization}\0{principal}".encode(), digest_size=DIGEST_SIZE).digest()


@functools.lru_cache(maxsize=4096)
def key_digests(organization: str, principal: str) -> tuple[bytes, bytes, bytes]:
    """The digests of the keys of `rules`, in their order."""
    return (
        organization_digest(organization),
        principal_digest(organization, principal),
        invalid_digest(organization, principal),
    )


@dataclass(frozen=True)
class Rule:
    """The limits on one key (0: off), and whose key it is, for the refusal message."""

    per_min: int
    concurrent: int
    whose: str
    what: str = "queries"
    # A budget only checked on admission (charged by `count_invalid`), never holding a slot.
    checked_only: bool = False

    def applies(self, rates: bool, hold_slot: bool) -> bool:
        """Whether a request charging `rates` and holding a slot (or not) counts on this key."""
        if self.checked_only:
            return rates and bool(self.per_min)
        return (rates and bool(self.per_min)) or hold_slot

    def over_rate(self, wait_secs: int) -> TooManyRequests:
        """The refusal of a request over this key's rate."""
        return TooManyRequests(
            f"More than {self.per_min} {self.what} a minute for this {self.whose}.", wait_secs
        )

    def full(self) -> TooManyRequests:
        """The refusal of a request finding every slot of this key taken."""
        return TooManyRequests(f"{self.concurrent} queries of this {self.whose} are already running.", 1)


def rules(limits: Limits) -> tuple[Rule, Rule, Rule]:
    """The keys a request counts on, in the order of `key_digests`: organization, credential,
    and the credential's invalid requests."""
    return (
        Rule(limits.per_org_per_min, limits.concurrent_per_org, "organization"),
        Rule(limits.per_principal_per_min, limits.concurrent_per_principal, "credential"),
        Rule(limits.invalid_per_principal_per_min, 0, "credential", "invalid queries", checked_only=True),
    )


Release = Callable[[], None]


class Limiter(Protocol):
    """Admits a query or raises TooManyRequests; where the counters live is the store's affair."""

    limits: Limits

    def admit(
        self, organization: str, principal: str, hold_slot: bool = True, *, rates: bool = True
    ) -> AbstractContextManager[None]:
        """Count one request against the rates and, with `hold_slot`, hold a concurrency slot."""
        ...

    def charge(self, organization: str, principal: str) -> None:
        """Count one request against the rates, holding nothing."""
        ...

    def hold(self, organization: str, principal: str) -> AbstractContextManager[None]:
        """Hold a concurrency slot, the rates already charged."""
        ...

    def count_invalid(self, organization: str, principal: str) -> None:
        """Charge one invalid request to the principal's budget of them."""
        ...

    def release_process(self, pid: int) -> int:
        """Drop every slot a (dead) process of this host holds; the number dropped."""
        ...

    def slots_held(self, organization: str) -> int:
        """Running queries counted against an organization."""
        ...

    def readiness(self) -> str:
        """The store's state for `/readyz`: `local`, `ok`, or `unavailable`."""
        ...


class Admission:
    """`admit`, `charge` and `hold` of every store, from its `_acquire` and the release it returns."""

    limits: Limits

    @contextmanager
    def admit(
        self, organization: str, principal: str, hold_slot: bool = True, *, rates: bool = True
    ) -> Iterator[None]:
        """Count one request against the rates (unless not `rates`) and, with `hold_slot`, hold
        a concurrency slot."""
        release = self._acquire(organization, principal, rates, hold_slot)
        try:
            yield
        finally:
            if release is not None:
                release()

    def charge(self, organization: str, principal: str) -> None:
        """Count one request against the rates, holding nothing (TooManyRequests if over one)."""
        self._acquire(organization, principal, rates=True, hold_slot=False)

    def hold(self, organization: str, principal: str) -> AbstractContextManager[None]:
        """Hold a concurrency slot, the rates already charged (TooManyRequests if none is free)."""
        return self.admit(organization, principal, rates=False)

    def _acquire(self, organization: str, principal: str, rates: bool, hold_slot: bool) -> Release | None:
        raise NotImplementedError


def build_limiter(settings: Settings) -> Limiter:
    """The limiter the settings ask for: shared through PostgreSQL, or this host's table."""
    limits = Limits.from_settings(settings)
    if settings.limits_database_url and not limits.off:
        from proxy.runtime.shared_limits import SharedLimiter

        return SharedLimiter(
            settings.limits_database_url,
            limits,
            settings.limits_on_store_error,
            settings.limits_store_timeout_secs,
        )
    return TableLimiter(settings.limits_path, limits)


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
