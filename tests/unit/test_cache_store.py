"""The local store: answers kept and expired, the byte bound held by evicting, a failure is a miss."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from proxy.cache.store import DiskStore, answer_bytes, kept_bytes, log_bytes

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
    ("bound", "log", "answer", "kept"),
    [
        (512 * 1024, 128 * 1024, 64 * 1024, 288 * 1024),
        (64 * MIB, 4 * MIB, 8 * MIB, 52 * MIB - 32 * 1024),
        (64 * 1024, 128 * 1024, 8 * 1024, 0),
    ],
)
def test_the_bound_is_shared_by_the_answers_the_log_its_index_and_a_write(
    bound: int, log: int, answer: int, kept: int
) -> None:
    assert (log_bytes(bound), answer_bytes(bound), kept_bytes(bound)) == (log, answer, kept)


def test_an_answer_larger_than_its_share_is_not_kept_and_counted(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "results", MIB)
    before = REGISTRY.get_sample_value("reporting_proxy_cache_too_large_total") or 0.0
    store.put("fits", b"x" * answer_bytes(MIB), None)
    store.put("too large", b"x" * (answer_bytes(MIB) + 1), None)
    assert (store.get("fits") is not None, store.get("too large")) == (True, None)
    assert REGISTRY.get_sample_value("reporting_proxy_cache_too_large_total") == before + 1


def on_disk(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def test_the_store_files_together_stay_within_the_bound_while_others_read(tmp_path: Path) -> None:
    # Another process's store reads all along, as the other workers do: SQLite's own checkpoints
    # then cannot empty the log, the store's must.
    directory = tmp_path / "results"
    store = DiskStore(directory, MIB)
    sizes = [os.urandom(size) for size in (2_000, 20_000, 50_000, answer_bytes(MIB))]
    stop = multiprocessing.get_context("spawn").Event()
    reader = multiprocessing.get_context("spawn").Process(target=read_until, args=(directory, stop))
    reader.start()
    try:
        largest = 0
        for n in range(300):
            store.put(f"key-{n}", sizes[n % len(sizes)], None)
            largest = max(largest, on_disk(directory))
    finally:
        stop.set()
        reader.join(10)
    assert reader.exitcode == 0
    assert largest <= MIB


def read_until(directory: Path, stop: Event) -> None:
    store = DiskStore(directory, MIB)
    while not stop.is_set():
        for n in range(300):
            store.get(f"key-{n}")
