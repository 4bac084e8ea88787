"""The data dir (`PROXY_DATA_DIR`): every tenant's data and the access store, so its owner's
alone. Made 0700 and proved writable at start, before anything opens a file in it; its files
are 0600.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from proxy.settings import Settings, SettingsError

DIR_MODE = 0o700
FILE_MODE = 0o600
# SQLite gives the log and the shared-memory index of a database the database file's mode.
_SQLITE_COMPANIONS = ("-wal", "-shm")


def prepare_data_dir(settings: Settings) -> Path:
    """The data dir, created 0700 (an existing one tightened) and its known files 0600;
    SettingsError naming PROXY_DATA_DIR if it cannot be written."""
    path = settings.data_dir
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        _tighten(path, DIR_MODE)
        _prove_writable(path)
    except OSError as exc:
        raise SettingsError(
            f"PROXY_DATA_DIR={path}: cannot be written ({exc.strerror or exc}); "
            "point it at a directory this user can create files in"
        ) from exc
    for known in (settings.access_db_path, settings.limits_path):
        _tighten_if_there(known)
    return path


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite database file at `path` 0600 before SQLite does (it would use the
    umask, 0644 commonly); an existing one and its companions are tightened."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
    _tighten_if_there(path)


def _tighten_if_there(path: Path) -> None:
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in _SQLITE_COMPANIONS)):
        try:
            _tighten(candidate, FILE_MODE)
        except FileNotFoundError:
            pass


def _tighten(path: Path, mode: int) -> None:
    """Take away the bits `mode` does not have; a path someone else owns is left as it is."""
    status = path.stat()
    if stat.S_IMODE(status.st_mode) & ~mode and status.st_uid == os.geteuid():
        path.chmod(stat.S_IMODE(status.st_mode) & mode)


def _prove_writable(path: Path) -> None:
    # os.access answers for the permission bits, not for a read-only mount or a full inode table.
    fd, name = tempfile.mkstemp(prefix=".write-check-", dir=path)
    os.close(fd)
    os.unlink(name)
