"""The embedded engine's storage: the `sessions` table and its generations on disk.

DuckDB lets one process write a database file, and no other process may open a file while it is
held for writing. Loads therefore never touch the file readers use; each writes a new
generation and then flips a pointer:

    <embedded_dir>/
        CURRENT                  name of the generation to read (replaced atomically)
        sessions-<n>.duckdb      generations; a load writes n+1, then points CURRENT at it
        load.lock                flock held for the whole of a load
        spill/<pid>-<n>/         what a reader process's queries spill past their memory

Readers (`reader.Reader`: one read-only DuckDB instance per process, a cursor per request)
look at CURRENT before each query and move to a new generation when it changed. A load keeps
the generation it replaced, for readers still on it, and deletes the ones before.

Every tenant's sessions are in these files: the directory is 0700 and every file in it 0600,
created so rather than narrowed afterwards.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
