"""Connections kept per thread: reused in a thread, never shared, replaced after a fork or a failure."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from proxy.runtime.sqlite_connections import ThreadConnections


@pytest.fixture
def connections(tmp_path: Path) -> ThreadConnections:
    return ThreadConnections(tmp_path / "db.sqlite3", 5.0, ["PRAGMA foreign_keys = ON"])


def _same_thread_twice(connections: ThreadConnections) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    with connections.connection() as first:
        pass
    with connections.connection() as second:
        return first, second


def test_a_thread_reuses_its_connection_with_the_pragmas_applied(connections: ThreadConnections) -> None:
    first, second = _same_thread_twice(connections)
    assert first is second
    assert second.execute("PRAGMA foreign_keys").fetchone() == (1,)


def test_threads_never_share_a_connection(connections: ThreadConnections) -> None:
    seen: list[sqlite3.Connection] = []
    thread = threading.Thread(target=lambda: seen.append(_same_thread_twice(connections)[0]))
    thread.start()
    thread.join()
    assert seen[0] is not _same_thread_twice(connections)[0]


def test_a_forked_child_opens_its_own(
    connections: ThreadConnections, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = _same_thread_twice(connections)[0]
    monkeypatch.setattr("proxy.runtime.sqlite_connections.os.getpid", lambda: -1)
    assert _same_thread_twice(connections)[0] is not parent


def test_a_connection_left_in_a_transaction_is_replaced(connections: ThreadConnections) -> None:
    with pytest.raises(RuntimeError), connections.connection() as broken:
        broken.execute("BEGIN IMMEDIATE")
        raise RuntimeError("failed mid-transaction")
    with connections.connection() as fresh:
        assert fresh is not broken and not fresh.in_transaction
