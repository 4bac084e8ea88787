"""The limiter's counters: fixed-size tables in one file that every worker process on the host
maps (MAP_SHARED), so reading or changing them is a few memory accesses under one lock.

    header     magic, version, process entries P, key entries K, probe window W (64 bytes)
    processes  P x pid, start time (clock ticks since boot, as /proc gives it), generation,
               slots held, time of its last slot (ns)
    keys       K x theoretical arrival time (GCRA, ns), 16-byte blake2b digest of the key's text
    in flight  K x P 16-bit counters (no process runs 65,535 queries at once): a row per
               key, a column per process entry

- The header names the shape, so a file of another version or shape (or anything else) is
  never misread: a fresh file is written next to it and renamed over it, under the old file's
  lock. Processes that had mapped the old file count in it until they restart.
- flock excludes processes but not the threads sharing one file description, so a thread lock
  is taken first. Each process maps the file through a description of its own: a child of a
  fork that used its parent's would share the parent's lock.
- A key lives at one of the W positions from its digest's home. Lookups scan all W, so a
  position freed on the way needs no tombstone. A position is free when its arrival time is
  past and its row is zero: an entry in that state means what no entry means.
- The file's blocks are reserved when it is made (posix_fallocate), and again when a process
  opens it: a page of a mapping that the disk cannot back is SIGBUS, which no handler turns
  into an error. Without room the file is not used at all, and gunicorn's master, which drops
  a dead worker's slots, does so with read and write calls (`release_process_unmapped`): an
  error there is ENOSPC, never a signal.
- A running query counts 1 in its process's column, so a key's count is its row's sum (one C
  call) and a process's slots all go by zeroing its column: when the process died, or when it
  leaked them. Each drop bumps the entry's generation, so a release from before the drop
  changes nothing.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

# A rate's window, in integer nanoseconds like every time in the file, so that the intervals of
# a burst sum exactly: in float seconds they do not, so a burst can lose its last request or
# overshoot the window by a hair, which reads as a clock that jumped back (a reset bucket).
# An arrival time further ahead than the window did come from such a clock, and counts as spent.
WINDOW_NS = 60 * 10**9
_MAGIC = b"RPLIMITS"
_VERSION = 2  # bumped whenever the layout or the units of a field change
_HEADER = struct.Struct("=8s4I")  # magic, version, processes, keys, probe window
_HEADER_SIZE = 64
DIGEST_SIZE = 16


def process_identity(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a live process; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may itself hold spaces and parentheses.
    rest = stat[stat.rindex(")") + 2 :].split()
    return rest[0], rest[19]


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


@dataclass(frozen=True)
class Shape:
    """The sizes of the tables: process entries, key entries, positions a key may take."""

    processes: int = 64
    keys: int = 16_384
    probe: int = 16

    @property
    def header(self) -> bytes:
        """The header a file of this shape starts with."""
        return _HEADER.pack(_MAGIC, _VERSION, self.processes, self.keys, self.probe).ljust(
            _HEADER_SIZE, b"\0"
        )

    @property
    def file_size(self) -> int:
        """Bytes of the whole file: header, five arrays of processes, two of keys, the counters."""
        return _HEADER_SIZE + 5 * 8 * self.processes + (8 + DIGEST_SIZE + 2 * self.processes) * self.keys


# How long a waiter lets another holder keep the lock before it stops waiting.
LOCK_WAIT_SECS = 2.0


class Exclusion:
    """A thread lock, then flock on this process's own descriptor: one holder on the host.

    The locked work takes microseconds, so a holder that keeps the lock for `LOCK_WAIT_SECS` is stuck
    (a worker stopped by SIGSTOP or a debugger): waiters give up with TimeoutError, an OSError
    that the limiter answers by admitting unlimited, rather than every request hanging with it.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._wait_secs = LOCK_WAIT_SECS
        self._threads = threading.Lock()

    def __enter__(self) -> None:
        deadline = time.monotonic() + self._wait_secs
        if not self._threads.acquire(timeout=self._wait_secs):
            raise TimeoutError("limiter lock held by another thread too long")
        try:
            self._flock(deadline)
        except BaseException:
            self._threads.release()
            raise

    def _flock(self, deadline: float) -> None:
        pause = 0.00005
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError("limiter lock held by another process too long") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.002)

    def __exit__(self, *exc_info: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


class Arrays:
    """Typed views of the tables in a buffer holding the whole file: the mapping of a `Table`,
    or a copy read with pread."""

    def __init__(self, buffer: mmap.mmap | bytearray, shape: Shape) -> None:
        self.shape = shape
        self._buffer = buffer
        processes, keys = shape.processes, shape.keys
        views = _split(
            memoryview(buffer),
            [8 * processes] * 5 + [8 * keys, DIGEST_SIZE * keys, 2 * processes * keys],
        )
        self.pids, self.starts = views[0].cast("q"), views[1].cast("q")
        self.generations, self.slots = views[2].cast("Q"), views[3].cast("Q")
        self.last_taken, self.tats = views[4].cast("q"), views[5].cast("q")
        self.digests, self.in_flight = views[6], views[7].cast("H")
        self._digests_at = _HEADER_SIZE + 5 * 8 * processes + 8 * keys
        self._zero_column = memoryview(bytes(2 * keys)).cast("H")

    def find(self, digest: bytes) -> int | None:
        """The position of the key with this digest, if it has one."""
        start = self._digests_at + self._home(digest) * DIGEST_SIZE
        end = start + self.shape.probe * DIGEST_SIZE
        at = self._buffer.find(digest, start, end)
        while at >= 0 and (at - self._digests_at) % DIGEST_SIZE:  # a match across two digests
            at = self._buffer.find(digest, at + 1, end)
        return None if at < 0 else (at - self._digests_at) // DIGEST_SIZE

    def locate(self, digest: bytes, now: int) -> int | None:
        """The position of a key, a free one claimed for a new key; None if its window is full."""
        found = self.find(digest)
        if found is not None:
            return found
        home = self._home(digest)
        for position in range(home, home + self.shape.probe):
            if self._free(position, now):
                self.digests[position * DIGEST_SIZE : (position + 1) * DIGEST_SIZE] = digest
                return position
        return None

    def count(self, position: int) -> int:
        """Queries running under the key at `position`, in every process."""
        processes = self.shape.processes
        return sum(self.in_flight[position * processes : (position + 1) * processes])

    def entry_of(self, pid: int, started: int) -> int | None:
        """The entry of process (pid, start), claimed if new; None if live processes hold all."""
        for index, entry_pid in enumerate(self.pids.tolist()):
            if entry_pid == pid and self.starts[index] == started:
                return index
        free = self._free_entry()
        if free is not None:
            self.pids[free], self.starts[free] = pid, started
            self.last_taken[free] = 0
        return free

    def take(self, positions: tuple[int, ...], entry: int, now: int) -> int:
        """Count one running query of process `entry` on each key; the entry's generation."""
        for position in positions:
            self.in_flight[position * self.shape.processes + entry] += 1
        self.slots[entry] += 1
        self.last_taken[entry] = now
        return self.generations[entry]

    def reclaim(self, now: int, leaked_after: int) -> tuple[int, int]:
        """Free the entries of dead processes, and drop the slots of live ones that took none
        for `leaked_after` ns yet hold some: (dead processes, leaked slots)."""
        dead = self._free_dead()
        leaked = sum(
            self._drop(index)
            for index, pid in enumerate(self.pids.tolist())
            if pid and self.slots[index] and self.last_taken[index] < now - leaked_after
        )
        return dead, leaked

    def release_process(self, pid: int) -> int:
        """Free every entry of `pid`; the slots dropped."""
        return sum(
            self._free_process(index)
            for index, entry_pid in enumerate(self.pids.tolist())
            if entry_pid == pid
        )

    def _home(self, digest: bytes) -> int:
        return int.from_bytes(digest[:8], "little") % (self.shape.keys - self.shape.probe + 1)

    def _free(self, position: int, now: int) -> bool:
        return not now < self.tats[position] <= now + WINDOW_NS and not self.count(position)

    def _free_entry(self) -> int | None:
        if 0 not in self.pids.tolist():
            self._free_dead()
        pids = self.pids.tolist()
        return pids.index(0) if 0 in pids else None

    def _free_dead(self) -> int:
        dead = [
            index
            for index, pid in enumerate(self.pids.tolist())
            if pid and not process_alive(pid, str(self.starts[index] or ""))
        ]
        for index in dead:
            self._free_process(index)
        return len(dead)

    def _drop(self, entry: int) -> int:
        held = self.slots[entry]
        self.in_flight[entry :: self.shape.processes] = self._zero_column
        self.slots[entry] = 0
        self.generations[entry] += 1
        return held

    def _free_process(self, entry: int) -> int:
        held = self._drop(entry)
        self.pids[entry] = self.starts[entry] = 0
        return held


class Table(Arrays):
    """This process's mapping of the file, and its lock. Every method but `open` expects the
    caller to hold `lock`."""

    def __init__(self, fd: int, shape: Shape) -> None:
        weakref.finalize(self, os.close, fd)
        self.lock = Exclusion(fd)
        self.pid = os.getpid()
        identity = process_identity(self.pid)
        self.started = int(identity[1]) if identity else 0
        self._own_entry: int | None = None
        super().__init__(mmap.mmap(fd, shape.file_size), shape)

    @classmethod
    def open(cls, path: Path, shape: Shape) -> Table:
        """The table in the file at `path`, created, or replaced if its header is not `shape`'s."""
        return cls(_open_current(path, shape), shape)

    def own_entry(self) -> int | None:
        """This process's entry, claimed on first use and again after it was freed."""
        entry = self._own_entry
        if entry is None or self.pids[entry] != self.pid or self.starts[entry] != self.started:
            entry = self._own_entry = self.entry_of(self.pid, self.started)
        return entry

    def give_back(self, positions: tuple[int, ...], entry: int, generation: int) -> None:
        """Undo one `take` of this process, unless its slots were dropped since."""
        if self.generations[entry] != generation or self.pids[entry] != self.pid:
            return
        for position in positions:
            self.in_flight[position * self.shape.processes + entry] -= 1
        self.slots[entry] -= 1


def _split(buffer: memoryview, sizes: list[int]) -> list[memoryview]:
    """Consecutive views of `sizes` bytes each, from the end of the header on."""
    views, at = [], _HEADER_SIZE
    for size in sizes:
        views.append(buffer[at : at + size])
        at += size
    return views


def prepare(path: Path, shape: Shape) -> None:
    """Make sure the file at `path` has `shape`'s header and its space reserved; map nothing."""
    os.close(_open_current(path, shape))


def release_process_unmapped(path: Path, shape: Shape, pid: int) -> int:
    """`release_process` through pread and pwrite on the file, never a mapping: for gunicorn's
    master, which a SIGBUS would kill. The slots dropped; 0 if there is no file of `shape`."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        with Exclusion(fd):
            if not _has_header(fd, shape):
                return 0  # replaced since: the slots went with the file that held them
            before = os.pread(fd, shape.file_size, 0)
            image = bytearray(before)
            dropped = Arrays(image, shape).release_process(pid)
            _write_changed_pages(fd, before, image)
            return dropped
    finally:
        os.close(fd)


def _write_changed_pages(fd: int, before: bytes, after: bytearray) -> None:
    for at in range(0, len(after), mmap.PAGESIZE):
        page = after[at : at + mmap.PAGESIZE]
        if page != before[at : at + mmap.PAGESIZE]:
            os.pwrite(fd, page, at)


def _open_current(path: Path, shape: Shape) -> int:
    """A descriptor of the file at `path` with `shape`'s header and its blocks reserved, created
    or replaced if need be; OSError (ENOSPC among others) if it cannot be had."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Another process may have replaced the file between our open and our lock.
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                if _has_header(fd, shape):
                    # A file made sparse (by an older version, or copied) gets its blocks now.
                    os.posix_fallocate(fd, 0, shape.file_size)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    return fd
                _replace_with_fresh(path, shape)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _has_header(fd: int, shape: Shape) -> bool:
    return os.fstat(fd).st_size == shape.file_size and os.pread(fd, _HEADER_SIZE, 0) == shape.header


def _replace_with_fresh(path: Path, shape: Shape) -> None:
    fresh = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, shape.file_size)  # zeros, every block reserved: tables empty
        os.pwrite(fd, shape.header, 0)
    except BaseException:
        os.close(fd)
        fresh.unlink(missing_ok=True)  # a half-made file would only hold on to the space
        raise
    os.close(fd)
    os.replace(fresh, path)
