"""SQLite connections kept open per thread, for the access store's small shared file.

Opening and closing a connection per call would make every close the last one on the file, and
the last close of a WAL database checkpoints the log and deletes it: an fsync and an unlink on
every request. A connection per thread and process stays open instead; after a fork the child
opens its own, never touching the parent's.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class ThreadConnections:
    """One autocommit connection to `path` per thread, each set up with `pragmas` once."""

    def __init__(self, path: Path, busy_timeout_secs: float, pragmas: Sequence[str] = ()) -> None:
        self._path = path
        self._timeout = busy_timeout_secs
        self._pragmas = tuple(pragmas)
        self._local = threading.local()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None)
        for pragma in self._pragmas:
            conn.execute(pragma)
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection; one left inside a transaction by a failure is replaced."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = self._open()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                self._local.conn = None
                conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside one write transaction, rolled back on any failure."""
        # IMMEDIATE takes the write lock up front (waiting on busy_timeout); a deferred
        # transaction upgrading from read to write fails at once under WAL instead.
        with self.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
