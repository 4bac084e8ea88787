"""The limiter's file on a disk without room: its space reserved up front, a limiter that cannot
have it admits unlimited, and dropping a dead process's slots never maps the file (gunicorn's
master does that, and a SIGBUS would kill it)."""

from __future__ import annotations

import errno
import logging
import mmap
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.runtime.limit_table import Shape, prepare, release_process_unmapped
from proxy.runtime.limits import Limits
from proxy.runtime.table_limits import TableLimiter
from tests.support.ids import ORG

SHAPE = Shape()
RATE_AND_SLOTS = Limits(1, 0, 5, 0)
SLOTS = Limits(0, 0, 5, 0)


def _no_space(*args: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _no_mapping(*args: Any) -> None:
    raise AssertionError("the file was mapped")


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def _sparse_file_of_this_layout(path: Path) -> None:
    with path.open("wb") as file:
        file.write(SHAPE.header)
        file.truncate(SHAPE.file_size)


def test_a_new_file_has_every_block_reserved(tmp_path: Path) -> None:
    path = tmp_path / "limits.shm"
    TableLimiter(path, RATE_AND_SLOTS)
    assert _allocated(path) >= SHAPE.file_size


def test_a_sparse_file_of_this_layout_gets_its_blocks_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "limits.shm"
    _sparse_file_of_this_layout(path)
    before = path.stat().st_ino
    prepare(path, SHAPE)
    assert (path.stat().st_ino, _allocated(path) >= SHAPE.file_size) == (before, True)


@pytest.mark.parametrize("sparse_file_there", [False, True], ids=["no_file", "sparse_file"])
def test_no_room_for_the_file_admits_unlimited_logs_once_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sparse_file_there: bool
) -> None:
    path = tmp_path / "limits.shm"
    if sparse_file_there:
        _sparse_file_of_this_layout(path)
    monkeypatch.setattr(os, "posix_fallocate", _no_space)
    monkeypatch.setattr(mmap, "mmap", _no_mapping)
    with caplog.at_level(logging.WARNING, logger="proxy.runtime.table_limits"):
        limiter = TableLimiter(path, RATE_AND_SLOTS)
        admitted = 0
        for _ in range(5):  # one a minute allowed: all five pass the limiter that cannot count
            with limiter.admit(ORG, "key:a"):
                admitted += 1
    assert admitted == 5
    assert len(caplog.records) == 2  # at start, then once a minute
    assert [p.name for p in tmp_path.iterdir()] == ["limits.shm"]  # no half-made fresh file


def test_dropping_a_process_s_slots_reads_and_writes_the_file_without_mapping_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "limits.shm"
    worker = TableLimiter(path, SLOTS)
    held = [worker.admit(ORG, f"key:{n}") for n in range(3)]
    for holder in held:
        holder.__enter__()
    with monkeypatch.context() as patched:
        patched.setattr(mmap, "mmap", _no_mapping)
        # What gunicorn's master does in child_exit, for a worker that died holding three slots.
        dropped = TableLimiter(path, SLOTS).release_process(os.getpid())
    assert (dropped, worker.slots_held(ORG)) == (3, 0)
    assert release_process_unmapped(path, SHAPE, os.getpid()) == 0
    for holder in held:
        holder.__exit__(None, None, None)  # their slots were dropped: gives nothing back
    assert worker.slots_held(ORG) == 0


def test_dropping_slots_of_a_file_of_another_layout_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "limits.shm"
    path.write_bytes(b"not a limits file")
    assert (release_process_unmapped(path, SHAPE, os.getpid()), path.read_bytes()) == (
        0,
        b"not a limits file",
    )
    assert release_process_unmapped(tmp_path / "missing.shm", SHAPE, os.getpid()) == 0


# Admits requests and drops a process's slots with the data dir on a filesystem smaller than
# the table; before the space was reserved this died of SIGBUS (exit 135).
_ON_A_SMALL_DISK = """
import os, sys
from pathlib import Path
from proxy.runtime.limit_table import Shape
from proxy.runtime.limits import Limits
from proxy.runtime.table_limits import TableLimiter

path = Path(sys.argv[1]) / "limits.shm"
if sys.argv[2] == "sparse":  # a file of this layout left sparse, as an older version made it
    with path.open("wb") as file:
        file.write(Shape().header)
        file.truncate(Shape().file_size)
limiter = TableLimiter(path, Limits(600, 300, 8, 6))
for n in range(200):
    with limiter.admit(f"org-{n}", "key:a"):
        pass
print("admitted", n + 1, "dropped", TableLimiter(path, Limits(600, 300, 8, 6)).release_process(os.getpid()))
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="mounts a tmpfs: root only")
@pytest.mark.parametrize("start", ["empty", "sparse"])
def test_a_filesystem_without_room_for_the_table_never_kills_the_process(tmp_path: Path, start: str) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    # A mount namespace of its own: the tmpfs goes with the child, whatever happens to the test.
    script = f'mount -t tmpfs -o size=1m tmpfs {disk} && exec {sys.executable} -c "$0" {disk} {start}'
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, _ON_A_SMALL_DISK],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert (done.returncode, done.stdout) == (0, "admitted 200 dropped 0\n"), done.stderr[-2000:]


def test_the_table_is_larger_than_the_small_disk_above() -> None:
    assert SHAPE.file_size > 2**20 >= mmap.PAGESIZE
