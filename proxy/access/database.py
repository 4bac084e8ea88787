"""Where the access store keeps its rows: a SQLite file of this host, or a PostgreSQL every host shares.

The store's queries are written once, in SQL both databases run (`?` placeholders, `ON CONFLICT`,
`RETURNING`); a `Database` gives them a session and says which driver errors mean it cannot answer.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

import psycopg

from proxy.runtime.data_dir import private_sqlite_file
from proxy.runtime.postgres_pool import STORE_ERRORS, ProcessPool, connection_pool
from proxy.runtime.sqlite_connections import ThreadConnections

Dialect = Literal["sqlite", "postgres"]
Row = tuple[Any, ...]

# Waiting this long for another worker's write lock beats failing with "database is locked".
_BUSY_TIMEOUT_SECS = 10.0
# One connection per serving thread of a worker at most (serve runs 2, gunicorn_conf 4).
_POOL_SIZE = 4


class Session(Protocol):
    """One connection, inside a transaction or in autocommit."""

    def run(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        """Execute one statement; its rows (none for a statement that returns none)."""
        ...


class Database(Protocol):
    """A session per call; `errors` are the driver's exceptions meaning the store cannot answer."""

    dialect: Dialect
    errors: tuple[type[Exception], ...]

    def session(self) -> AbstractContextManager[Session]:
        """A connection in autocommit: every read sees the latest committed revocation."""
        ...

    def transaction(self) -> AbstractContextManager[Session]:
        """A connection inside one transaction, committed at the end, rolled back on any failure."""
        ...

    def close(self) -> None:
        """Close this process's connections."""
        ...


class _SqliteSession:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def run(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(query, params).fetchall()


class SqliteDatabase:
    """The access store in a SQLite file shared by every worker process and thread of one host."""

    dialect: Dialect = "sqlite"
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        private_sqlite_file(path)  # key hashes and grants: this user's alone, its log too
        self._connections = ThreadConnections(path, _BUSY_TIMEOUT_SECS, ["PRAGMA foreign_keys = ON"])
        with self._connections.connection() as conn:
            _use_wal(conn, _BUSY_TIMEOUT_SECS)

    @contextmanager
    def session(self) -> Iterator[Session]:
        # A connection per thread and process: nothing is shared across threads or inherited
        # through gunicorn's fork. Autocommit, so every read sees the latest revocation.
        with self._connections.connection() as conn:
            yield _SqliteSession(conn)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._connections.write() as conn:
            yield _SqliteSession(conn)

    def close(self) -> None:
        """Nothing to close: each thread's connection closes with the thread."""


def _use_wal(conn: sqlite3.Connection, timeout_secs: float) -> None:
    """WAL lets readers in other workers go on while one worker writes; the mode is stored in
    the file, so one switch covers every connection. The switch needs the file to itself and
    SQLite does not wait for it (no busy handler), so a process starting while another writes
    (a migration, `tokens create`) retries until the busy timeout."""
    deadline = time.monotonic() + timeout_secs
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@lru_cache(maxsize=64)
def _pyformat(query: str) -> str:
    # The store's SQL is written with SQLite's `?`; psycopg's placeholder is `%s`. No query
    # holds a literal `?` or `%`.
    return query.replace("?", "%s")


class _PostgresSession:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def run(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._conn.execute(_pyformat(query), params)
        return cursor.fetchall() if cursor.description else []


class PostgresDatabase:
    """The access store in a PostgreSQL every host shares: a pool per worker process."""

    dialect: Dialect = "postgres"
    errors: tuple[type[Exception], ...] = STORE_ERRORS

    def __init__(self, url: str, timeout_secs: float) -> None:
        self._timeout_secs = timeout_secs
        self._pool = ProcessPool(lambda: connection_pool(url, timeout_secs, "access", _POOL_SIZE))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._pool.connection(self._timeout_secs) as conn:
            yield _PostgresSession(conn)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._pool.connection(self._timeout_secs) as conn, conn.transaction():
            yield _PostgresSession(conn)

    def close(self) -> None:
        self._pool.close()
