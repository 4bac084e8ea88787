"""Connection pools to a shared PostgreSQL, one per store and worker process, every call bounded.

A pool is made in the process that uses it (`ProcessPool`), never inherited through gunicorn's
fork: its threads and sockets do not survive one. Every call is bounded by one timeout: the wait
for a pooled connection, the server's statement_timeout and lock_timeout, and TCP's user timeout
for a server that vanished without closing the socket. The pool reconnects by itself once the
database is back.

After a call fails on the database (cannot connect, timed out), the calls of the next
`PAUSE_AFTER_FAILURE_SECS` fail at once with `StoreDown` instead of each waiting out the timeout:
a database that is down would otherwise hold every serving thread for the whole timeout, and the
callers who need no database (JWT bearers) would queue behind them.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

Pool = ConnectionPool[psycopg.Connection[Any]]
Configure = Callable[[psycopg.Connection[Any]], None]

PAUSE_AFTER_FAILURE_SECS = 1.0


class StoreDown(psycopg.OperationalError):
    """The database failed a call moments ago; it is not asked again until the pause is over."""


# What a call to the database raises when the database cannot answer it (or refuses to).
STORE_ERRORS: tuple[type[Exception], ...] = (psycopg.Error, PoolTimeout)
# The failures that say the database is unreachable or overwhelmed, not that one statement is wrong.
_DOWN_ERRORS = (psycopg.OperationalError, PoolTimeout)
# How long the pool keeps retrying a connection before it gives up until the next request.
_RECONNECT_SECS = 5.0
# libpq's floor is 2 s; a request never waits for it, the pool's timeout is shorter.
_CONNECT_TIMEOUT_SECS = 2


def connection_pool(
    url: str, timeout_secs: float, name: str, max_size: int, configure: Configure | None = None
) -> Pool:
    """An open pool of autocommit connections whose every call is bounded by `timeout_secs`."""
    timeout_ms = max(1, round(timeout_secs * 1000))
    return ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        timeout=timeout_secs,
        reconnect_timeout=_RECONNECT_SECS,
        configure=configure,
        # Connections idle through an outage are dead when it ends: checked as they are lent
        # (one empty round trip), they are replaced instead of failing a request each.
        check=ConnectionPool.check_connection,
        kwargs={
            "autocommit": True,
            "connect_timeout": _CONNECT_TIMEOUT_SECS,
            "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
            "tcp_user_timeout": timeout_ms,
            "application_name": f"reporting-proxy {name}",
        },
        name=name,
        open=True,
    )


def create_schema_once(
    connection: psycopg.Connection[Any], exists_sql: str, lock_id: int, create_sql: str
) -> None:
    """Run `create_sql` unless `exists_sql` finds the schema; workers starting together queue on `lock_id`."""
    with connection.transaction():
        row = connection.execute(exists_sql).fetchone()
        if row is not None and row[0] is not None:
            return
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id,))
        connection.execute(create_sql)


class ProcessPool:
    """A pool made on first use in each process that uses it; the parent's is never touched."""

    def __init__(self, make: Callable[[], Pool]) -> None:
        self._make = make
        self._pool: Pool | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._down_until = -math.inf

    @contextmanager
    def connection(self, timeout_secs: float) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection for one call; StoreDown while the pause after a failure lasts."""
        if time.monotonic() < self._down_until:
            raise StoreDown("the database failed moments ago; not asked again yet")
        try:
            with self.get().connection(timeout=timeout_secs) as conn:
                yield conn
        except _DOWN_ERRORS:
            self._down_until = time.monotonic() + PAUSE_AFTER_FAILURE_SECS
            raise

    def get(self) -> Pool:
        """This process's pool, made now if it has none yet."""
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool, self._pid = self._make(), os.getpid()
            return self._pool

    def close(self) -> None:
        """Close this process's pool, if it made one."""
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None
