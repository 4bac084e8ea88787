"""The embedded engine bounded and stoppable: DuckDB's limits per process, the query stop at the
deadline and on a hang-up, a query over its memory, and private files. Figures: tests/soak."""

from __future__ import annotations

import shutil
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from proxy.backends.base import Scope
from proxy.backends.embedded.backend import EmbeddedBackend
from proxy.backends.embedded.reader import EngineLimits, Reader
from proxy.backends.embedded.storage import CURRENT, LOCK, SPILL
from proxy.backends.embedded.watch import QueryStop
from proxy.errors import BackendTimeout, ClientDisconnected, ProxyError, QueryTooExpensive
from proxy.settings import Settings, load_settings
from proxyctl.ingest.embedded_loader import load_into_embedded
from proxyctl.ingest.generator import generate
from proxyctl.ingest.ndjson import validate_file
from tests.support.golden import golden_plan
from tests.support.queries import FIVE_ARRAYS_YEAR_DAILY

HEAVY = golden_plan(FIVE_ARRAYS_YEAR_DAILY | {"limit": 10})


@pytest.fixture(scope="module")
def loaded_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """20,000 generated sessions of one organization, loaded: (data dir, organization)."""
    data_dir = tmp_path_factory.mktemp("bounds")
    path = data_dir / "sessions.ndjson"
    (organization,) = generate(path, sessions=20_000, orgs=1, seed=5, workers=1)
    load_into_embedded([path], validate_file(path), Settings(data_dir=data_dir), lambda line: None)
    return data_dir, organization


@pytest.fixture
def generated(loaded_once: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    """A copy of the loaded data of each test's own: DuckDB lets a process open one file with
    one configuration at a time, and the tests open it with several."""
    data_dir, organization = loaded_once
    shutil.copytree(data_dir / "embedded", tmp_path / "embedded")
    return tmp_path, organization


def _backend(data_dir: Path, **settings: Any) -> EmbeddedBackend:
    return EmbeddedBackend(Settings(backend="embedded", data_dir=data_dir, **settings))


def _setting(reader: Reader, name: str) -> Any:
    with reader.cursor() as cursor:
        assert cursor is not None
        row = cursor.execute("SELECT current_setting(?)", [name]).fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("PROXY_EMBEDDED_MEMORY_LIMIT_MB", "512", "embedded_memory_limit_mb", 512),
        ("PROXY_EMBEDDED_THREADS", "2", "embedded_threads", 2),
        ("PROXY_EMBEDDED_SPILL_LIMIT_MB", "0", "embedded_spill_limit_mb", 0),
    ],
)
def test_the_limits_are_read_from_the_environment(
    variable: str, value: str, field: str, expected: int
) -> None:
    assert getattr(load_settings({variable: value}), field) == expected


@pytest.mark.parametrize(
    ("limits", "setting", "expected"),
    [
        (EngineLimits(memory_limit_mb=96), "memory_limit", "91.5 MiB"),  # 96 MB in MiB
        (EngineLimits(threads=1), "threads", 1),
        (EngineLimits(threads=2), "threads", 2),
        (EngineLimits(spill_limit_mb=0), "temp_directory", ""),
        (EngineLimits(), "enable_external_access", False),
    ],
)
def test_every_reader_instance_opens_with_the_limits(
    generated: tuple[Path, str], limits: EngineLimits, setting: str, expected: Any
) -> None:
    assert _setting(Reader(generated[0] / "embedded", limits), setting) == expected


def test_a_spilling_instance_spills_into_its_own_private_directory(generated: tuple[Path, str]) -> None:
    directory = generated[0] / "embedded"
    spill_dir = Path(_setting(Reader(directory, EngineLimits(spill_limit_mb=64)), "temp_directory"))
    assert spill_dir.parent == directory / SPILL
    assert stat.S_IMODE((directory / SPILL).stat().st_mode) == 0o700


def test_the_limit_holds_for_the_process_not_each_cursor(generated: tuple[Path, str]) -> None:
    reader = Reader(generated[0] / "embedded", EngineLimits(memory_limit_mb=64))
    with reader.cursor() as first, reader.cursor() as second:
        assert first is not None and second is not None
        first.execute("SET memory_limit = '48MB'")
        row = second.execute("SELECT current_setting('memory_limit')").fetchone()
    assert row == ("45.7 MiB",)  # one DuckDB instance per process: its cursors share one pool


def test_the_memory_limit_is_back_after_memory_is_given_back(generated: tuple[Path, str]) -> None:
    data_dir, organization = generated
    backend = _backend(data_dir, embedded_memory_limit_mb=64)
    backend.execute(HEAVY, Scope.starting_now(organization, "heavy", 30))
    assert _setting(backend.reader, "memory_limit") == "61.0 MiB"  # 64 MB in MiB


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"embedded_memory_limit_mb": 4, "embedded_spill_limit_mb": 0}, QueryTooExpensive),
        ({"embedded_memory_limit_mb": 4, "embedded_spill_limit_mb": 100}, QueryTooExpensive),
        ({"embedded_memory_limit_mb": 64, "embedded_spill_limit_mb": 0}, None),
    ],
)
def test_a_query_over_its_memory_is_a_clear_400(
    generated: tuple[Path, str], settings: dict[str, int], error: type[ProxyError] | None
) -> None:
    data_dir, organization = generated
    backend = _backend(data_dir, **settings)
    if error is None:
        assert len(backend.execute(HEAVY, Scope.starting_now(organization, "fits", 30))) == 10
        return
    with pytest.raises(error) as caught:
        backend.execute(HEAVY, Scope.starting_now(organization, "too-big", 30))
    assert (caught.value.status, caught.value.code) == (400, "query_too_expensive")


class _GoneAfter:
    """A caller probe that says the caller has gone from its `calls`-th question on."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.asked >= self.calls


@pytest.mark.parametrize(
    ("budget_secs", "client_gone", "error", "code"),
    [
        (0.05, _GoneAfter(10**9), BackendTimeout, "backend_timeout"),  # the deadline mid-query
        (-1.0, _GoneAfter(10**9), BackendTimeout, "backend_timeout"),  # spent before it ran
        (30.0, _GoneAfter(2), ClientDisconnected, "client_closed_request"),  # gone mid-query
        (30.0, _GoneAfter(1), ClientDisconnected, "client_closed_request"),  # gone before it ran
    ],
)
def test_a_query_stops_at_its_deadline_and_when_its_caller_leaves(
    generated: tuple[Path, str],
    budget_secs: float,
    client_gone: _GoneAfter,
    error: type[ProxyError],
    code: str,
) -> None:
    data_dir, organization = generated
    scope = Scope.starting_now(organization, "stopped", budget_secs, client_gone)
    with pytest.raises(error) as caught:
        _backend(data_dir, embedded_memory_limit_mb=512).execute(HEAVY, scope)
    assert caught.value.code == code


class _Query:
    """A stand-in for a running query: counts interrupts; returns when told or interrupted."""

    def __init__(self, ignores: int = 0) -> None:
        self.interrupts = 0
        self.ignores = ignores  # interrupts that arrive before the query starts, and are lost
        self.stopped = threading.Event()

    def interrupt(self) -> None:
        self.interrupts += 1
        if self.interrupts > self.ignores:
            self.stopped.set()


@pytest.mark.parametrize(
    ("budget_secs", "gone", "ignores", "reason", "interrupts"),
    [
        (0.05, False, 0, "deadline", 1),
        (5.0, True, 0, "disconnected", 1),
        (0.05, False, 2, "deadline", 3),  # repeated until one lands
        (5.0, False, 0, None, 0),  # returned in time: never interrupted
    ],
)
def test_the_stop_interrupts_until_the_query_returns(
    budget_secs: float, gone: bool, ignores: int, reason: str | None, interrupts: int
) -> None:
    query = _Query(ignores)
    with QueryStop(query.interrupt, budget_secs, lambda: gone, poll_secs=0.01) as stop:
        query.stopped.wait(0.5)
    time.sleep(0.05)  # an interrupt after the exit would be counted here
    assert (stop.reason, query.interrupts) == (reason, interrupts)


def test_the_engine_files_are_private(generated: tuple[Path, str]) -> None:
    directory = generated[0] / "embedded"
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir() if path.is_file()}
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {CURRENT, LOCK, "sessions-1.duckdb"} <= set(modes)
    assert set(modes.values()) == {0o600}
