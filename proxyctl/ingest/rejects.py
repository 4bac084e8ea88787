"""Forgiving validation: bad rows go to a rejects file, only the good ones are loaded.

`screen` reads every input once, line by line. A line breaking the contract becomes one NDJSON
entry of its rejects file (`file`, 1-based `line`, the `reason` a strict load prints, the `raw`
line); a good line is kept. An input without a bad line is loaded as it is. An input with one
gets a clean copy, holding its good lines only, in a working directory: the engines read files
by path, and no rejected row may reach them (Druid's own `maxParseExceptions` stays 0, so Druid
never drops a row quietly either). Entries and good lines stream to disk; nothing is held per
row, and once the load is over its limit no copy is written any more. Errors:

    InvalidLine         an input holds no line at all (as in a strict load)
    RejectsClash        a rejects file would be one of the inputs
    TooManyBadRows      more bad rows than allowed; every one of them is in the rejects files
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from proxyctl.ingest.ndjson import BadRow, FileSummary, InvalidLine, read_line, summary_of

REJECTS_SUFFIX = ".rejects.ndjson"
_CHUNK = 1 << 20


class RejectsClash(ValueError):
    """A rejects file names one of the inputs: opening it would truncate that input."""


class TooManyBadRows(ValueError):
    """The inputs hold more bad rows than the load allows; nothing may be loaded."""

    def __init__(self, rejected: int, limit: int, rejects: Sequence[Path]) -> None:
        where = ", ".join(str(path) for path in rejects)
        super().__init__(f"{rejected} bad rows, more than --max-bad-rows {limit} allows; each is in {where}")
        self.rejected = rejected
        self.limit = limit


@dataclass(frozen=True)
class Screened:
    """One input after screening: the file to load and what its good rows hold."""

    source: Path
    load_path: Path  # the source itself, or its clean copy
    summary: FileSummary | None  # of the good rows; None when every row was rejected
    rejected: int
    rejects: Path


def default_rejects(source: Path) -> Path:
    """Where an input's rejects go unless the load names a file: beside it."""
    return source.with_name(source.name + REJECTS_SUFFIX)


def reject_entry(source: Path, line: int, reason: str, raw: bytes) -> bytes:
    """One rejects-file line; `raw` without its line end, undecodable bytes as U+FFFD."""
    text = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
    return orjson.dumps({"file": str(source), "line": line, "reason": reason, "raw": text}) + b"\n"


def _private(path: Path) -> IO[bytes]:
    """`path` truncated, for writing, created 0600: rejected rows are sessions too."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _copy_prefix(source: Path, sink: IO[bytes], size: int) -> None:
    with source.open("rb") as head:
        while size > 0:
            chunk = head.read(min(size, _CHUNK))
            sink.write(chunk)
            size -= len(chunk)


class _FileScreen:
    """The state of screening one input: its rejects so far and its clean copy, if any."""

    def __init__(self, source: Path, rejects: IO[bytes], copy_path: Path, budget: int) -> None:
        self.source, self.rejects, self.copy_path, self.budget = source, rejects, copy_path, budget
        self.rejected = 0
        self.copy: IO[bytes] | None = None

    def rows(self) -> Iterator[dict[str, Any]]:
        """The good rows, normalized; bad lines written to the rejects file on the way."""
        offset = 0
        with self.source.open("rb") as lines:
            for number, raw in enumerate(lines, start=1):
                try:
                    row = read_line(raw)
                except BadRow as exc:
                    self._reject(number, raw, str(exc), offset)
                else:
                    self._keep(raw)
                    yield row
                offset += len(raw)
        if offset == 0:
            raise InvalidLine(self.source, 1, "no sessions")

    def _reject(self, number: int, raw: bytes, reason: str, offset: int) -> None:
        self.rejects.write(reject_entry(self.source, number, reason, raw))
        self.rejected += 1
        if self.rejected == 1 and self.budget > 0:
            # Every line before the first bad one is good: copy them as they are, in one go.
            self.copy = _private(self.copy_path)
            _copy_prefix(self.source, self.copy, offset)
        elif self.rejected > self.budget and self.copy is not None:
            self.copy.close()  # over the limit: nothing will be loaded, stop copying
            self.copy = None

    def _keep(self, raw: bytes) -> None:
        if self.copy is not None:
            self.copy.write(raw if raw.endswith(b"\n") else raw + b"\n")

    def close(self) -> None:
        if self.copy is not None:
            self.copy.close()

    def result(self, summary: FileSummary | None, rejects: Path) -> Screened:
        load_path = self.copy_path if self.rejected else self.source
        return Screened(self.source, load_path, summary, self.rejected, rejects)


@contextmanager
def _rejects_files(sources: Sequence[Path], rejects: Path | None) -> Iterator[dict[Path, IO[bytes]]]:
    """Each input's rejects file, open and truncated: `rejects` for all, else one beside each."""
    targets = {source: rejects or default_rejects(source) for source in sources}
    with ExitStack() as stack:
        opened = {path: stack.enter_context(_private(path)) for path in set(targets.values())}
        yield {source: opened[target] for source, target in targets.items()}


def check_rejects_paths(sources: Sequence[Path], rejects: Path | None) -> None:
    """`RejectsClash` if a rejects file is one of the inputs."""
    inputs = {source.resolve() for source in sources}
    clash = sorted(str(p) for s in sources if (p := rejects or default_rejects(s)).resolve() in inputs)
    if clash:
        raise RejectsClash(f"the rejects file {clash[0]} is one of the input files")


def screen(sources: Sequence[Path], limit: int, rejects: Path | None, workdir: Path) -> list[Screened]:
    """Every input screened once; clean copies go to `workdir`. `TooManyBadRows` past `limit`."""
    check_rejects_paths(sources, rejects)
    screened: list[Screened] = []
    with _rejects_files(sources, rejects) as sinks:
        for number, source in enumerate(sources):
            budget = limit - sum(item.rejected for item in screened)
            state = _FileScreen(source, sinks[source], workdir / f"{number}-{source.name}", budget)
            try:
                summary = summary_of(state.rows())
            finally:
                state.close()
            screened.append(state.result(summary, rejects or default_rejects(source)))
    total = sum(item.rejected for item in screened)
    if total > limit:
        raise TooManyBadRows(total, limit, sorted({item.rejects for item in screened}))
    return screened
