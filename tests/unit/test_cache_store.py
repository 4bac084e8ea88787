"""The local store: answers kept and expired, the byte bound held by evicting, a failure is a miss."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from multiprocessing.context import SpawnProcess
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
    """Bytes of the store's files now; a file or folder evicted while they are counted counts 0."""
    total = 0
    for folder, _, names in os.walk(directory):
        for name in names:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


SPAWN = multiprocessing.get_context("spawn")


def largest_on_disk_while(directory: Path, processes: list[SpawnProcess], seconds: float) -> int:
    """Start `processes`, sample the store's bytes on disk until they end (or `seconds` pass and
    they are told to stop through their first argument's event), and the largest seen."""
    for process in processes:
        process.start()
    largest, ends = 0, time.monotonic() + seconds
    while any(process.is_alive() for process in processes) and time.monotonic() < ends:
        largest = max(largest, on_disk(directory))
    return largest


def stop_all(stop: Event, processes: list[SpawnProcess]) -> None:
    stop.set()
    for process in processes:
        process.join(20)
    assert [process.exitcode for process in processes] == [0] * len(processes)


ANSWERS = (2_000, 20_000, 50_000, answer_bytes(MIB))


def read_until(directory: Path, stop: Event, ready: Event | None = None) -> None:
    store = DiskStore(directory, MIB)
    store.get("key-0")
    if ready is not None:
        ready.set()
    while not stop.is_set():
        for n in range(300):
            store.get(f"key-{n}")


def write_all(directory: Path, stop: Event, first: int) -> None:
    store = DiskStore(directory, MIB)
    for n in range(first, first + 150):
        store.put(f"key-{n}", os.urandom(ANSWERS[n % len(ANSWERS)]), None)


def test_the_store_files_together_stay_within_the_bound_while_others_read(tmp_path: Path) -> None:
    # Another process's store reads all along, as the other workers do: SQLite's own checkpoints
    # then cannot empty the log, the store's must.
    directory = tmp_path / "results"
    store = DiskStore(directory, MIB)
    stop = SPAWN.Event()
    reader = SPAWN.Process(target=read_until, args=(directory, stop))
    reader.start()
    try:
        largest = 0
        for n in range(300):
            store.put(f"key-{n}", os.urandom(ANSWERS[n % len(ANSWERS)]), None)
            largest = max(largest, on_disk(directory))
    finally:
        stop_all(stop, [reader])
    assert largest <= MIB


def test_the_bound_holds_while_two_processes_write_at_once(tmp_path: Path) -> None:
    # Each worker writes on a thread of its own: an answer is on disk before the least recently
    # used are evicted for it, so writes take turns.
    directory = tmp_path / "results"
    DiskStore(directory, MIB)
    stop = SPAWN.Event()
    writers = [SPAWN.Process(target=write_all, args=(directory, stop, first)) for first in (0, 1000)]
    try:
        largest = largest_on_disk_while(directory, writers, 60)
    finally:
        stop_all(stop, writers)
    assert largest <= MIB


def test_reads_alone_never_grow_the_log(tmp_path: Path) -> None:
    # A dashboard's repeated panels are all hits: were a hit to mark its entry used (a write),
    # readers in every worker would keep the log from ever being emptied.
    directory = tmp_path / "results"
    store = DiskStore(directory, MIB)
    for n in range(60):
        store.put(f"key-{n}", os.urandom(ANSWERS[n % 3]), None)
    stop = SPAWN.Event()
    ready = [SPAWN.Event() for _ in range(3)]
    readers = [SPAWN.Process(target=read_until, args=(directory, stop, event)) for event in ready]
    for reader in readers:
        reader.start()
    try:
        assert all(event.wait(30) for event in ready)
        log_file = directory / "cache.db-wal"
        opened = log_file.stat().st_size  # opening a store writes its settings once
        time.sleep(2)
        after_reads = log_file.stat().st_size
    finally:
        stop_all(stop, readers)
    assert after_reads <= opened
