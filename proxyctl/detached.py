"""Local servers started detached from the terminal, found again later by the record of their pid."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ProcessRecord:
    """A started process: its pid and kernel start time, so a reused pid is never signalled."""

    pid: int
    start_ticks: int


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command (which may hold spaces): state is field 3,
    # starttime field 22. A zombie child of this very CLI counts as dead.
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[19])


def record_of(pid: int) -> ProcessRecord:
    """The record of a process just started (start time 0 when it has already exited)."""
    return ProcessRecord(pid, _start_ticks(pid) or 0)


def is_alive(record: ProcessRecord) -> bool:
    """Whether the recorded process still runs (and is the same process)."""
    return _start_ticks(record.pid) == record.start_ticks


def start_detached(
    command: Sequence[str], cwd: Path, log_path: Path, popen_args: dict[str, Any] | None = None
) -> ProcessRecord:
    """Launch `command` in its own session, stdout and stderr appended to `log_path`."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            **(popen_args or {}),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return record_of(process.pid)
