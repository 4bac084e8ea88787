"""Where answers live: the interface any store meets, and the local one every worker of a host shares.

The local store is `diskcache` (SQLite in WAL mode under the data directory): safe for many
processes and threads at once, bounded in bytes with least-recently-used eviction, each
entry's expiry kept with it. Several hosts share one PostgreSQL store instead
(`proxy.cache.shared_store`); see docs/cache.md.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Protocol

import diskcache

log = logging.getLogger(__name__)

# Failures of the store are logged and served as a miss: a cache never fails a request.
_STORE_ERRORS = (diskcache.Timeout, sqlite3.Error, OSError)
# How long a store call may wait on another process's write before it gives up (a miss).
_BUSY_SECS = 1
# SQLite's write-ahead log and its index sit beside the database, outside diskcache's volume:
# the log is checkpointed back and truncated at half its share, its index is one 32 KiB block
# (up to 4,096 pages of log), and answers are kept within what is left of the bound, so the
# store's files as a whole stay within it. One commit can carry the log past half its share.
_PAGE_BYTES = 4096
_LOG_SHARE = 8
_LOG_MOST_BYTES = 4 * 1024 * 1024
_LOG_LEAST_BYTES = 16 * _PAGE_BYTES
_INDEX_BYTES = 32 * 1024


def log_bytes(max_bytes: int) -> int:
    """The share of a bound SQLite's write-ahead log may use."""
    return min(_LOG_MOST_BYTES, max(_LOG_LEAST_BYTES, max_bytes // _LOG_SHARE))


def kept_bytes(max_bytes: int) -> int:
    """What the answers themselves may use of a bound: the rest is the log's and its index's."""
    return max(0, max_bytes - log_bytes(max_bytes) - _INDEX_BYTES)


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
        self._opened: dict[int, diskcache.Cache] = {}

    def _cache(self) -> diskcache.Cache:
        # By process id: an SQLite connection must not cross a fork.
        pid = os.getpid()
        cache = self._opened.get(pid)
        if cache is None:
            cache = self._opened.setdefault(pid, self._open())
        return cache

    def _open(self) -> diskcache.Cache:
        # Culling is ours (cull_limit=0), after each put, so the evictions can be counted.
        half_log = log_bytes(self.max_bytes) // 2
        return diskcache.Cache(
            str(self.directory),
            size_limit=self.kept_bytes,
            eviction_policy="least-recently-used",
            cull_limit=0,
            timeout=_BUSY_SECS,
            statistics=False,
            sqlite_wal_autocheckpoint=half_log // _PAGE_BYTES,
            sqlite_journal_size_limit=half_log,
        )

    def get(self, key: str) -> bytes | None:
        try:
            body = self._cache().get(key)
        except _STORE_ERRORS:
            log.warning("result cache read failed; answering without it", exc_info=True)
            return None
        return body if isinstance(body, bytes) else None

    def put(self, key: str, body: bytes, lifetime_secs: float | None) -> int:
        try:
            cache = self._cache()
            cache.set(key, body, expire=lifetime_secs)
            return int(cache.cull()) if cache.volume() > self.kept_bytes else 0
        except _STORE_ERRORS:
            log.warning("result cache write failed; the answer is not kept", exc_info=True)
            return 0

    def volume(self) -> int:
        try:
            return int(self._cache().volume())
        except _STORE_ERRORS:
            return 0
