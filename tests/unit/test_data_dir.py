"""The data dir: made 0700, its files 0600, and a start that cannot write it names PROXY_DATA_DIR."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from proxy.runtime.data_dir import prepare_data_dir
from proxy.service.reporting import ReportingService
from proxy.settings import Settings, SettingsError
from proxyctl.access import orgs
from tests.unit.web import StubBackend

FILES = ("access.sqlite3", "access.sqlite3-wal", "access.sqlite3-shm", "limits.shm")


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _read_only(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def test_a_new_data_dir_is_the_owner_s_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "var"
    prepare_data_dir(Settings(data_dir=data_dir))
    assert (_mode(data_dir), list(data_dir.iterdir())) == (0o700, [])


def test_an_open_data_dir_and_its_files_are_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)
    for name in FILES:
        (data_dir / name).write_bytes(b"")
        (data_dir / name).chmod(0o644)
    prepare_data_dir(Settings(data_dir=data_dir))
    assert [_mode(data_dir)] + [_mode(data_dir / name) for name in FILES] == [0o700] + [0o600] * 4


def test_a_service_starts_with_a_private_access_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    os.umask(previous := os.umask(0o022))  # the common umask, whatever the test runner's
    try:
        ReportingService(Settings(data_dir=data_dir), StubBackend())
    finally:
        os.umask(previous)
    assert (_mode(data_dir), _mode(data_dir / "access.sqlite3")) == (0o700, 0o600)


def _file_in_the_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "file").write_text("")
    return tmp_path / "file" / "var"


def _read_only_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("tempfile.mkstemp", _read_only)
    return tmp_path


@pytest.mark.parametrize("unwritable", [_file_in_the_way, _read_only_mount], ids=["not_a_dir", "read_only"])
@pytest.mark.parametrize("start", ["prepare", "service", "cli"])
def test_a_start_that_cannot_write_the_data_dir_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unwritable: Any, start: str
) -> None:
    data_dir = unwritable(tmp_path, monkeypatch)
    settings = Settings(data_dir=data_dir)
    if start == "cli":
        monkeypatch.setenv("PROXY_DATA_DIR", str(data_dir))
        result = CliRunner().invoke(orgs, ["list"])
        assert (result.exit_code, f"PROXY_DATA_DIR={data_dir}: cannot be written" in result.output) == (
            1,
            True,
        )
        return
    with pytest.raises(SettingsError, match=f"^PROXY_DATA_DIR={data_dir}: cannot be written"):
        if start == "service":
            ReportingService(settings, StubBackend())
        else:
            prepare_data_dir(settings)
