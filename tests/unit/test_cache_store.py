"""The local store: answers kept and expired, the byte bound held by evicting, a failure is a miss."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from proxy.cache.store import DiskStore, kept_bytes, log_bytes

MIB = 1024 * 1024


def test_an_answer_is_kept_until_it_expires(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "results", MIB)
    store.put("past", b"forever", None)
    store.put("recent", b"briefly", 0.05)
    assert (store.get("past"), store.get("recent"), store.get("absent")) == (b"forever", b"briefly", None)
    time.sleep(0.1)
    assert (store.get("past"), store.get("recent")) == (b"forever", None)


def test_the_directory_is_private(tmp_path: Path) -> None:
    DiskStore(tmp_path / "results", MIB)
    assert stat.S_IMODE(os.stat(tmp_path / "results").st_mode) == 0o700


def test_filling_past_the_bound_evicts_the_least_recently_used(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "results", 2 * MIB)
    body = os.urandom(64 * 1024)
    store.put("first", body, None)
    evicted = [store.put(f"key-{n}", body, None) for n in range(100)]
    assert sum(evicted) > 0
    assert store.volume() <= 2 * MIB
    assert store.get("first") is None


def test_a_store_that_cannot_open_is_a_miss(tmp_path: Path) -> None:
    # A directory where the database file belongs: SQLite cannot open it.
    (tmp_path / "results" / "cache.db").mkdir(parents=True)
    store = DiskStore(tmp_path / "results", MIB)
    assert (store.get("key"), store.put("key", b"body", None), store.volume()) == (None, 0, 0)


@pytest.mark.parametrize(
    ("bound", "log", "kept"),
    [
        (512 * 1024, 64 * 1024, 416 * 1024),
        (64 * MIB, 4 * MIB, 60 * MIB - 32 * 1024),
        (64 * 1024, 64 * 1024, 0),
    ],
)
def test_the_bound_is_shared_by_the_answers_the_log_and_its_index(bound: int, log: int, kept: int) -> None:
    assert (log_bytes(bound), kept_bytes(bound)) == (log, kept)


def test_the_store_files_together_stay_within_the_bound(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "results", MIB)
    sizes = [os.urandom(size) for size in (2_000, 20_000, 50_000)]
    for n in range(150):
        store.put(f"key-{n}", sizes[n % 3], None)
    on_disk = sum(path.stat().st_size for path in (tmp_path / "results").rglob("*") if path.is_file())
    assert on_disk <= MIB
