"""Where answers live: the interface any store meets, and the local one every worker of a host shares.

The local store is `diskcache` (SQLite in WAL mode under the data directory): safe for many
processes and threads at once, bounded in bytes with the least recently stored answers evicted
first, each entry's expiry kept with it. Several hosts share one PostgreSQL store instead
(`proxy.cache.shared_store`); see docs/cache.md.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Protocol

import diskcache

from proxy.runtime.metrics import observe_cache_too_large

log = logging.getLogger(__name__)

# Failures of the store are logged and served as a miss: a cache never fails a request.
_STORE_ERRORS = (diskcache.Timeout, sqlite3.Error, OSError)
# How long a store call may wait on another process's write before it gives up (a miss).
_BUSY_SECS = 1
_CHECKPOINT_RETRY_SECS = 0.002
_WRITE_LOCK = "write.lock"
# The bound covers the store's files as a whole. SQLite's write-ahead log and its index sit
# beside the database, outside diskcache's volume, and a new answer is written before the least
# recently used are evicted for it. So the log gets a share (checkpointed at a quarter of it, and
# emptied by the writer once past half), its index one 32 KiB block (up to 4,096 pages of log),
# the answer being written the room it may take (a larger answer is not kept; one write at a
# time), and the answers kept use the rest. The log's other half is for the write that passes
# the first.
_PAGE_BYTES = 4096
_LOG_SHARE = 8
_LOG_MOST_BYTES = 4 * 1024 * 1024
_LOG_LEAST_BYTES = 32 * _PAGE_BYTES
_INDEX_BYTES = 32 * 1024
_ANSWER_SHARE = 8


def log_bytes(max_bytes: int) -> int:
    """The share of a bound SQLite's write-ahead log may use."""
    return min(_LOG_MOST_BYTES, max(_LOG_LEAST_BYTES, max_bytes // _LOG_SHARE))


def answer_bytes(max_bytes: int) -> int:
    """The largest answer a bound keeps: the room one answer takes while it is written."""
    return max_bytes // _ANSWER_SHARE


def kept_bytes(max_bytes: int) -> int:
    """What the answers themselves may use of a bound: the rest is the log's, its index's and a write's."""
    return max(0, max_bytes - log_bytes(max_bytes) - _INDEX_BYTES - answer_bytes(max_bytes))


class ResultStore(Protocol):
    """Answers by key, bounded in bytes; every method is safe from any thread and process."""

    def get(self, key: str) -> bytes | None:
        """The answer stored under `key`, None when absent or expired."""

    def put(self, key: str, body: bytes, lifetime_secs: float | None) -> int:
        """Store an answer (for `lifetime_secs`, or until evicted); the entries evicted to fit."""

    def volume(self) -> int:
        """Bytes the store holds now."""


class DiskStore:
    """The local store: one directory of the data dir, opened once per process."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        self.directory = directory
        self.max_bytes = max_bytes
        self.kept_bytes = kept_bytes(max_bytes)
        self.answer_bytes = answer_bytes(max_bytes)
        self.log_bytes = log_bytes(max_bytes)
        self._opened: dict[int, diskcache.Cache] = {}

    def _cache(self) -> diskcache.Cache:
        # By process id: an SQLite connection must not cross a fork.
        pid = os.getpid()
        cache = self._opened.get(pid)
        if cache is None:
            cache = self._opened.setdefault(pid, self._open())
        return cache

    def _open(self) -> diskcache.Cache:
        # Culling is ours (cull_limit=0), after each put, so the evictions can be counted. Least
        # recently *stored* goes first: under "least recently used" every read marks its entry
        # used, a write, and hits from every worker then keep SQLite's log from ever being
        # emptied, far past the bound (docs/cache.md).
        quarter_log = self.log_bytes // 4
        return diskcache.Cache(
            str(self.directory),
            size_limit=self.kept_bytes,
            eviction_policy="least-recently-stored",
            cull_limit=0,
            timeout=_BUSY_SECS,
            statistics=False,
            sqlite_wal_autocheckpoint=quarter_log // _PAGE_BYTES,
            sqlite_journal_size_limit=quarter_log,
        )

    def get(self, key: str) -> bytes | None:
        try:
            body = self._cache().get(key)
        except _STORE_ERRORS:
            log.warning("result cache read failed; answering without it", exc_info=True)
            return None
        return body if isinstance(body, bytes) else None

    def put(self, key: str, body: bytes, lifetime_secs: float | None) -> int:
        if len(body) > self.answer_bytes:
            observe_cache_too_large()
            return 0
        try:
            cache = self._cache()
            # One write at a time across the host's processes: diskcache writes an answer before
            # it evicts for it, and the bound keeps room for one answer only.
            with _locked(self.directory / _WRITE_LOCK):
                cache.set(key, body, expire=lifetime_secs)
                evicted = int(cache.cull()) if cache.volume() > self.kept_bytes else 0
        except _STORE_ERRORS:
            log.warning("result cache write failed; the answer is not kept", exc_info=True)
            return 0
        self._empty_log()
        return evicted

    def volume(self) -> int:
        try:
            return int(self._cache().volume())
        except _STORE_ERRORS:
            return 0

    def _empty_log(self) -> None:
        # SQLite's own checkpoints never wait for readers, so while other workers read the log
        # cannot be reset and grows with every write. Past half its share, a checkpoint that
        # waits for the readers empties it; another process's checkpoint running at the time
        # makes it busy at once, so it is tried again within the busy timeout. Under the write
        # lock, so no answer write keeps it busy.
        log_file = self.directory / "cache.db-wal"
        if _size(log_file) <= self.log_bytes // 2:
            return
        deadline = time.monotonic() + _BUSY_SECS
        try:
            with (
                _locked(self.directory / _WRITE_LOCK),
                closing(sqlite3.connect(self.directory / "cache.db", timeout=_BUSY_SECS)) as connection,
            ):
                while _size(log_file) > self.log_bytes // 2 and time.monotonic() < deadline:
                    ((busy, _, _),) = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                    if not busy:
                        return
                    time.sleep(_CHECKPOINT_RETRY_SECS)
        except _STORE_ERRORS:
            log.warning("result cache log checkpoint failed; tried again after the next write", exc_info=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` across processes and threads (each call opens its own file)."""
    with path.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield
