"""The embedded engine's storage: the `sessions` table and its generations on disk.

DuckDB lets one process write a database file, and no other process may open a file while it is
held for writing. Loads therefore never touch the file readers use; each writes a new
generation and then flips a pointer:

    <embedded_dir>/
        CURRENT                  name of the generation to read (replaced atomically)
        sessions-<n>.duckdb      generations; a load writes n+1, then points CURRENT at it
        load.lock                flock held for the whole of a load
        spill/<pid>-<n>/         what a reader process's queries spill past their memory

Readers (one read-only connection per process, a cursor per request) look at CURRENT before
each query and move to a new generation when it changed. A load keeps the generation it
replaced, for readers still on it, and deletes the ones before.

Every tenant's sessions are in these files: the directory is 0700 and every file in it 0600,
created so rather than narrowed afterwards. Each process's DuckDB instance is bounded by
`EngineLimits` (memory, threads, spill space), and gives its cached memory back to the system
once its last query has returned (see `_Instance`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from proxy.query.catalog import DIMENSION_COLUMNS, ORGANIZATION_COLUMN, TIME_COLUMN
from schemas.vocabulary import DIMENSIONS, DimensionKind

TABLE = "sessions"
CURRENT = "CURRENT"
LOCK = "load.lock"
SPILL = "spill"
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GENERATION = re.compile(r"sessions-(\d+)\.duckdb")
_SPILL_DIR = re.compile(r"(\d+)-\d+")

log = logging.getLogger(__name__)

# Column type of each kind of dimension; empty arrays are stored as empty lists, never NULL.
COLUMN_TYPES: dict[DimensionKind, str] = {
    DimensionKind.STRING: "VARCHAR",
    DimensionKind.NUMBER: "BIGINT",
    DimensionKind.ARRAY: "VARCHAR[] NOT NULL",
}


def quote(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def epoch_ms(instant: datetime) -> int:
    """Whole epoch milliseconds, truncated like Druid's millisecond intervals."""
    return (instant.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)


class StorageError(OSError):
    """The data directory is in a state no reader can use (a CURRENT naming no generation)."""


def table_columns() -> list[tuple[str, str]]:
    """(column, SQL type) of the `sessions` table, in order."""
    columns = [(ORGANIZATION_COLUMN, "VARCHAR NOT NULL"), (TIME_COLUMN, "BIGINT NOT NULL")]
    return columns + [(DIMENSION_COLUMNS[name], COLUMN_TYPES[kind]) for name, kind in DIMENSIONS.items()]


def create_table_sql() -> str:
    """DDL of the `sessions` table."""
    columns = ",\n  ".join(f"{quote(name)} {sql_type}" for name, sql_type in table_columns())
    return f"CREATE TABLE {TABLE} (\n  {columns}\n)"


def generation_name(number: int) -> str:
    """File name of generation `number`."""
    return f"sessions-{number}.duckdb"


def generation_number(name: str) -> int | None:
    """The number in a generation's file name; None for any other name."""
    match = _GENERATION.fullmatch(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Generations:
    """The generation files of one data directory and the CURRENT pointer between them."""

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def signature(self) -> tuple[int, int, int] | None:
        """A cheap fingerprint of CURRENT (a new file gets a new inode); None when absent."""
        try:
            stat = os.stat(self.directory / CURRENT)
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def current(self) -> str | None:
        """Name of the generation CURRENT points at, None before the first load."""
        try:
            name = (self.directory / CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if generation_number(name) is None:
            raise StorageError(f"{self.directory / CURRENT} names no generation: {name!r}")
        return name

    def existing(self) -> list[str]:
        """Generation files present on disk, oldest first."""
        if not self.directory.is_dir():
            return []
        names = [p.name for p in self.directory.iterdir() if generation_number(p.name) is not None]
        return sorted(names, key=lambda name: generation_number(name) or 0)

    def next_name(self) -> str:
        """A generation name no file has used yet."""
        numbers = [generation_number(name) or 0 for name in self.existing()]
        return generation_name(max(numbers, default=0) + 1)

    def make_private(self) -> None:
        """Create the directory 0700, or narrow it and every file in it to 0700/0600."""
        self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        os.chmod(self.directory, DIRECTORY_MODE)
        for path in self.directory.iterdir():
            if path.is_file() and not path.is_symlink():
                os.chmod(path, FILE_MODE)

    def publish(self, name: str) -> None:
        """Point CURRENT at `name` atomically: readers see the old or the new name, never half."""
        temporary = self.directory / f".{CURRENT}.{os.getpid()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with os.fdopen(os.open(temporary, flags, FILE_MODE), "w", encoding="utf-8") as handle:
            handle.write(name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.directory / CURRENT)
        _fsync_directory(self.directory)

    def prune(self, keep: set[str]) -> list[str]:
        """Delete every generation (and its DuckDB side files) not in `keep`; the names deleted."""
        deleted = [name for name in self.existing() if name not in keep]
        for name in deleted:
            for suffix in ("", ".wal", ".tmp"):
                _remove(self.path(name + suffix))
        return deleted

    @contextmanager
    def load_lock(self) -> Iterator[None]:
        """Hold the exclusive load lock; a second load waits here for the first."""
        self.make_private()
        descriptor = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock


@contextmanager
def private_files() -> Iterator[None]:
    """Files this process creates meanwhile are 0600 (DuckDB's database and WAL included).

    The umask belongs to the whole process: only for single-threaded tools such as `load`.
    """
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            child.unlink(missing_ok=True)
        path.rmdir()
    else:
        path.unlink(missing_ok=True)


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
        return self.memory_limit_mb * 1024 * 1024 // 4


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
