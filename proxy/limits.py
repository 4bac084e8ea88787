"""Rate and concurrency limits per organization and per (organization, principal), shared by
every worker process on the host.

The counters live in one SQLite file in the data dir and change only inside `BEGIN IMMEDIATE`
transactions, so gunicorn's processes and their threads see one count without a server:

- rates use GCRA, a token bucket held as one "theoretical arrival time" per key: a key at
  `per_min` admits a burst of `per_min` and then one request every `60 / per_min` seconds;
- concurrency is one row per running query, tagged with its process id and start time. Every
  exit path of `admit` deletes the row; rows of a process that died (SIGKILL, OOM, gunicorn's
  worker timeout) are reclaimed when a key looks full and by gunicorn's `child_exit` hook, and
  rows older than any query can live are reclaimed as a last resort.

A limiter that cannot reach its file admits the request and logs: limits protect the backend,
they are not worth an outage of their own.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from proxy.errors import TooManyRequests
from proxy.settings import Settings
from proxy.sqlite_connections import ThreadConnections

log = logging.getLogger(__name__)

_WINDOW_SECS = 60.0
_BUSY_TIMEOUT_SECS = 5.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rates (key TEXT PRIMARY KEY, tat REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slots (
    id INTEGER PRIMARY KEY,
    organization TEXT NOT NULL,
    principal TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_started TEXT NOT NULL,
    acquired REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS slots_by_org ON slots (organization, principal);
"""


@dataclass(frozen=True)
class Limits:
    """The four admission limits; 0 turns one off."""

    per_org_per_min: int = 600
    per_principal_per_min: int = 300
    concurrent_per_org: int = 8
    concurrent_per_principal: int = 6
    # A slot older than this is leaked whatever its process says: no query lives that long.
    stale_slot_secs: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits the `PROXY_*` settings ask for."""
        return cls(
            per_org_per_min=settings.rate_limit_per_org_per_min,
            per_principal_per_min=settings.rate_limit_per_principal_per_min,
            concurrent_per_org=settings.max_concurrent_per_org,
            concurrent_per_principal=settings.max_concurrent_per_principal,
            stale_slot_secs=2 * settings.request_timeout_secs + 60,
        )

    @property
    def off(self) -> bool:
        """Whether every limit is off, so the file need not be touched at all."""
        return not (
            self.per_org_per_min
            or self.per_principal_per_min
            or self.concurrent_per_org
            or self.concurrent_per_principal
        )


def process_identity(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a live process; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may itself hold spaces and parentheses.
    rest = stat[stat.rindex(")") + 2 :].split()
    return rest[0], rest[19]


_own: dict[int, str] = {}


def _own_start() -> str:
    # Cached per pid, since a fork gives the child a new pid and a new start time.
    pid = os.getpid()
    if pid not in _own:
        identity = process_identity(pid)
        _own[pid] = identity[1] if identity else ""
    return _own[pid]


def process_alive(pid: int, started: str) -> bool:
    """Whether the process that took a slot still runs (a reused pid or a zombie does not)."""
    identity = process_identity(pid)
    if identity is None:
        return _signal_alive(pid) if not started else False
    state, start = identity
    return state != "Z" and (not started or start == started)


def _signal_alive(pid: int) -> bool:
    # Without /proc there is no start time to compare: existence is the best evidence.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Limiter:
    """Admits a query or raises TooManyRequests; the state is shared through one SQLite file."""

    def __init__(self, path: Path, limits: Limits, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self.limits = limits
        self._clock = clock
        # The counters need no durability across a power cut; NORMAL skips the fsync per commit.
        self._connections = ThreadConnections(path, _BUSY_TIMEOUT_SECS, ["PRAGMA synchronous = NORMAL"])
        if not limits.off:
            with self._connect() as conn:
                # WAL: readers never block the writer; the mode is stored in the file.
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)

    @contextmanager
    def admit(self, organization: str, principal: str, hold_slot: bool = True) -> Iterator[None]:
        """Count one request against the rates and, with `hold_slot`, hold a concurrency slot."""
        slot = self._acquire(organization, principal, hold_slot)
        try:
            yield
        finally:
            if slot is not None:
                self._release(slot)

    def release_process(self, pid: int) -> int:
        """Drop every slot a (dead) process holds; the number dropped."""
        if self.limits.off:
            return 0
        with self._write() as conn:
            return conn.execute("DELETE FROM slots WHERE pid = ?", (pid,)).rowcount

    def slots_held(self, organization: str) -> int:
        """Running queries counted against an organization (for tests and operators)."""
        with self._connect() as conn:
            row = conn.execute("SELECT count(*) FROM slots WHERE organization = ?", (organization,))
            return int(row.fetchone()[0])

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        # A connection per thread, like the access store: nothing crosses threads or a fork.
        return self._connections.connection()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._connections.write()

    def _acquire(self, organization: str, principal: str, hold_slot: bool) -> int | None:
        if self.limits.off:
            return None
        try:
            with self._write() as conn:
                now = self._clock()
                rates = self._charge_rates(conn, organization, principal, now)
                slot = self._take_slot(conn, organization, principal, now) if hold_slot else None
                conn.executemany("INSERT OR REPLACE INTO rates (key, tat) VALUES (?, ?)", rates)
                return slot
        except sqlite3.Error:
            log.exception("rate limiter unavailable; admitting the request unlimited")
            return None

    def _release(self, slot: int) -> None:
        try:
            # One statement is its own transaction: no read precedes the write to go stale.
            with self._connect() as conn:
                conn.execute("DELETE FROM slots WHERE id = ?", (slot,))
        except sqlite3.Error:
            log.exception("could not release limiter slot %d; it expires on its own", slot)

    def _charge_rates(
        self, conn: sqlite3.Connection, organization: str, principal: str, now: float
    ) -> list[tuple[str, float]]:
        keys = [
            (key, per_min, whose)
            for key, per_min, whose in (
                (f"org:{organization}", self.limits.per_org_per_min, "organization"),
                (f"principal:{organization}:{principal}", self.limits.per_principal_per_min, "credential"),
            )
            if per_min
        ]
        if not keys:
            return []
        marks = ", ".join("?" * len(keys))
        stored = dict(conn.execute(f"SELECT key, tat FROM rates WHERE key IN ({marks})", [k for k, _, _ in keys]))
        charged: list[tuple[str, float]] = []
        for key, per_min, whose in keys:
            tat = _next_arrival(stored.get(key), per_min, now)
            if tat - now > _WINDOW_SECS:
                wait = math.ceil(tat - now - _WINDOW_SECS)
                raise TooManyRequests(f"More than {per_min} queries a minute for this {whose}.", wait)
            charged.append((key, tat))
        return charged

    def _take_slot(self, conn: sqlite3.Connection, organization: str, principal: str, now: float) -> int:
        refusal = self._full(conn, organization, principal)
        if refusal and self._reclaim(conn, now):
            refusal = self._full(conn, organization, principal)
        if refusal:
            raise TooManyRequests(refusal, retry_after=1)
        cursor = conn.execute(
            "INSERT INTO slots (organization, principal, pid, pid_started, acquired)"
            " VALUES (?, ?, ?, ?, ?)",
            (organization, principal, os.getpid(), _own_start(), now),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _full(self, conn: sqlite3.Connection, organization: str, principal: str) -> str | None:
        org_count, principal_count = conn.execute(
            "SELECT count(*), coalesce(sum(principal = ?), 0) FROM slots WHERE organization = ?",
            (principal, organization),
        ).fetchone()
        per_org, per_principal = self.limits.concurrent_per_org, self.limits.concurrent_per_principal
        if per_org and org_count >= per_org:
            return f"{per_org} queries of this organization are already running."
        if per_principal and principal_count >= per_principal:
            return f"{per_principal} queries of this credential are already running."
        return None

    def _reclaim(self, conn: sqlite3.Connection, now: float) -> bool:
        """Delete slots of dead processes and stale slots; whether any went."""
        holders = conn.execute("SELECT DISTINCT pid, pid_started FROM slots").fetchall()
        dead = [(pid, started) for pid, started in holders if not process_alive(pid, started)]
        conn.executemany("DELETE FROM slots WHERE pid = ? AND pid_started = ?", dead)
        stale = conn.execute(
            "DELETE FROM slots WHERE acquired < ?", (now - self.limits.stale_slot_secs,)
        ).rowcount
        if dead or stale:
            log.warning("reclaimed limiter slots: %d dead processes, %d stale slots", len(dead), stale)
        return bool(dead or stale)


def _next_arrival(stored: float | None, per_min: int, now: float) -> float:
    tat = now if stored is None else float(stored)
    # A time further ahead than one window can only come from a clock that jumped back: reset.
    if tat - now > _WINDOW_SECS:
        tat = now
    return max(tat, now) + _WINDOW_SECS / per_min
