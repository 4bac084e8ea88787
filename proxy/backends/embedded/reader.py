"""The embedded engine's readers: one bounded, read-only DuckDB instance per process.

Each worker process opens the current generation once (`Reader`), with `EngineLimits`: DuckDB's
memory limit, its threads and the disk it may spill to, in `<embedded_dir>/spill/<pid>-<n>/`.
The limits hold for the instance, so for the process and all its threads together. Each query
takes a cursor of its own; once the last one in flight returns, an instance that made the
process grow gives its cached buffers back (`_Instance`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from proxy.backends.embedded.storage import DIRECTORY_MODE, SPILL, Generations, generation_number

_SPILL_DIR = re.compile(r"(\d+)-\d+")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineLimits:
    """What one process's DuckDB instance may use; every reader connection opens with them."""

    memory_limit_mb: int = 256
    threads: int = 1
    spill_limit_mb: int = 2048  # 0: no spilling, so a query over its memory fails at once

    def config(self, spill_dir: Path | None) -> dict[str, str | bool | int | float | list[str]]:
        """DuckDB's start-up settings for an instance that spills into `spill_dir` (None: never)."""
        spill: dict[str, str | bool | int | float | list[str]] = {"temp_directory": ""}
        if spill_dir is not None:
            spill = {"temp_directory": str(spill_dir), "max_temp_directory_size": f"{self.spill_limit_mb}MB"}
        return {**spill, "memory_limit": f"{self.memory_limit_mb}MB", "threads": self.threads}

    @property
    def release_above_bytes(self) -> int:
        """Growth since an instance last gave memory back past which, once idle, it gives it back."""
        return self.memory_limit_mb * 1024 * 1024 // 8


def resident_bytes() -> int:
    """This process's resident memory, from /proc; 0 where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


class _Instance:
    """One DuckDB instance (one generation) of this process and its queries in flight.

    DuckDB keeps the buffers of finished queries for the next ones, up to its memory limit, so
    an idle process would stay as large as its heaviest query made it. When the last query in
    flight returns and the process has grown past `release_above_bytes` since the last release,
    a brief drop of the limit evicts every unpinned buffer. Nothing runs meanwhile (new queries
    wait the few milliseconds), so no query can fail for want of memory; the growth test keeps
    light queries' cached blocks, which would cost them time to read again.
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection, limits: EngineLimits) -> None:
        self.connection = connection
        self._limits = limits
        self._lock = threading.Lock()
        self._in_flight = 0
        self._resident_after_release = resident_bytes()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for one query, counted in flight until it is closed."""
        with self._lock:
            self._in_flight += 1
        try:
            cursor = self.connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0 and self._grown():
                    self._release_memory()

    def _grown(self) -> bool:
        return resident_bytes() - self._resident_after_release > self._limits.release_above_bytes

    def _release_memory(self) -> None:
        try:
            with closing(self.connection.cursor()) as cursor:
                try:
                    cursor.execute("SET memory_limit = '1MB'")
                except duckdb.OutOfMemoryException:
                    pass  # some buffers are pinned: the others were evicted on the way
                finally:
                    cursor.execute(f"SET memory_limit = '{self._limits.memory_limit_mb}MB'")
        except duckdb.Error:
            log.exception("the embedded engine could not give its cached memory back")
        self._resident_after_release = resident_bytes()


@dataclass(frozen=True)
class _Open:
    """The generation a process reads: CURRENT's fingerprint, the name, its DuckDB instance."""

    signature: tuple[int, int, int] | None
    name: str | None
    instance: _Instance | None
    pid: int


class Reader:
    """One read-only DuckDB instance per process on the current generation, a cursor per query."""

    def __init__(self, directory: Path, limits: EngineLimits | None = None) -> None:
        self.generations = Generations(directory)
        self.limits = limits or EngineLimits()
        self._lock = threading.Lock()
        self._open = _Open(None, None, None, -1)

    def _fresh(self) -> _Open:
        """The open generation, switching first if CURRENT moved (or the process forked)."""
        opened = self._open
        signature = self.generations.signature()
        if opened.pid == os.getpid() and opened.signature == signature:
            return opened
        with self._lock:
            opened = self._open
            if opened.pid == os.getpid() and opened.signature == signature:
                return opened
            self._open = self._switch(opened, signature)
            return self._open

    def _switch(self, opened: _Open, signature: tuple[int, int, int] | None) -> _Open:
        name = self.generations.current()
        if name == opened.name and opened.pid == os.getpid():
            return _Open(signature, name, opened.instance, opened.pid)
        if name is None:
            return _Open(signature, None, None, os.getpid())
        # The old instance is dropped, not closed: queries still running on it hold it, and it
        # closes (its spill directory with it) when the last of them lets go.
        try:
            return _Open(signature, name, self._connect(name), os.getpid())
        except duckdb.IOException:
            # Two loads may have finished since CURRENT was read and deleted that generation.
            newer = self.generations.current()
            if newer is None or newer == name:
                raise
            return _Open(None, newer, self._connect(newer), os.getpid())

    def _connect(self, name: str) -> _Instance:
        spill_dir = self._spill_dir(name)
        path = str(self.generations.path(name))
        connection = duckdb.connect(path, read_only=True, config=self.limits.config(spill_dir))
        # Readers run only the translator's SQL and have no business with other files. Set once
        # open: DuckDB refuses a spill directory at start-up when external access is off.
        connection.execute("SET enable_external_access = false")
        return _Instance(connection, self.limits)

    def _spill_dir(self, name: str) -> Path | None:
        """This process's spill directory for generation `name` (DuckDB makes and removes it)."""
        if not self.limits.spill_limit_mb:
            return None
        root = self.generations.directory / SPILL
        try:
            root.mkdir(mode=DIRECTORY_MODE, exist_ok=True)
            os.chmod(root, DIRECTORY_MODE)
            _remove_stale_spill(root)
        except OSError:
            log.warning("no spill directory in %s: queries over their memory fail", root, exc_info=True)
            return None
        return root / f"{os.getpid()}-{generation_number(name)}"

    def ready(self) -> bool:
        """Whether a generation exists to answer from."""
        return self._fresh().instance is not None

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A cursor on the current generation for one query; None before the first load."""
        opened = self._fresh()
        if opened.instance is None:
            yield None
            return
        with opened.instance.cursor() as cursor:
            yield cursor


def _remove_stale_spill(root: Path) -> None:
    """Spill directories of processes that died without closing their instance."""
    for path in root.iterdir():
        match = _SPILL_DIR.fullmatch(path.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
