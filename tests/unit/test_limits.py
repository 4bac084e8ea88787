"""Rate and concurrency limits: the limiter on its own (fake clock), across real processes,
and through the service, where they apply after authorization and validation."""

from __future__ import annotations

import logging
import os
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.errors import BackendError, BackendTimeout, TooManyRequests
from proxy.runtime.limit_table import Shape
from proxy.runtime.limits import Limits, process_alive, process_identity
from proxy.runtime.table_limits import TableLimiter
from proxy.settings import SettingsError, load_settings
from tests.support.forking import passes_in_forked_child
from tests.support.ids import ORG, OTHER_ORG
from tests.support.limits import admit_outcome
from tests.unit.web import QUERY, StubBackend, make_web, url

OFF = Limits(0, 0, 0, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("per_min", "steps", "expected"),
    [
        # (seconds after start, requests then) → each request's outcome
        (3, [(0, 4)], [0, 0, 0, 20]),
        (3, [(0, 3), (19, 1), (20, 2)], [0, 0, 0, 1, 0, 20]),
        (3, [(0, 3), (60, 4)], [0, 0, 0, 0, 0, 0, 20]),
        (600, [(0, 601)], [0] * 600 + [1]),
        (1000, [(0, 1001)], [0] * 1000 + [1]),
        (7, [(0, 8)], [0] * 7 + [9]),
        (1, [(0, 2), (59.5, 1), (60, 1)], [0, 60, 1, 0]),
    ],
    ids=[
        "burst_then_refused",
        "refills_one_per_interval",
        "full_bucket_after_a_minute",
        "default_rate",
        "interval_not_exact_in_binary",
        "interval_not_whole",
        "one_a_minute",
    ],
)
def test_org_rate_is_a_token_bucket(
    tmp_path: Path, per_min: int, steps: list[tuple[float, int]], expected: list[int]
) -> None:
    clock = Clock()
    limiter = TableLimiter(tmp_path / "limits.shm", Limits(per_min, 0, 0, 0), clock)
    start = clock.now
    outcomes = []
    for offset, count in steps:
        clock.now = start + offset
        outcomes += [admit_outcome(limiter) for _ in range(count)]
    assert outcomes == expected


@pytest.mark.parametrize(
    ("limits", "first", "then", "expected"),
    [
        (Limits(1, 0, 0, 0), (ORG, "key:a"), (ORG, "key:b"), 60),
        (Limits(1, 0, 0, 0), (ORG, "key:a"), (OTHER_ORG, "key:a"), 0),
        (Limits(0, 1, 0, 0), (ORG, "key:a"), (ORG, "key:a"), 60),
        (Limits(0, 1, 0, 0), (ORG, "key:a"), (ORG, "key:b"), 0),
        (Limits(0, 1, 0, 0), (ORG, "key:a"), (OTHER_ORG, "key:a"), 0),
    ],
    ids=[
        "org_shared_by_principals",
        "org_not_shared_across_orgs",
        "principal",
        "principal_not_shared",
        "principal_not_shared_across_orgs",
    ],
)
def test_rate_keys(
    tmp_path: Path, limits: Limits, first: tuple[str, str], then: tuple[str, str], expected: int
) -> None:
    limiter = TableLimiter(tmp_path / "limits.shm", limits, Clock())
    assert admit_outcome(limiter, *first) == 0
    assert admit_outcome(limiter, *then) == expected


def test_a_refused_request_charges_no_rate(tmp_path: Path) -> None:
    limiter = TableLimiter(tmp_path / "limits.shm", Limits(2, 0, 1, 0), Clock())
    with limiter.admit(ORG, "key:a"):
        assert admit_outcome(limiter) == 1  # concurrency refused: must not spend the last token
    assert admit_outcome(limiter) == 0
    assert admit_outcome(limiter) == 30


def test_a_clock_that_jumped_back_resets_the_bucket(tmp_path: Path) -> None:
    clock = Clock()
    limiter = TableLimiter(tmp_path / "limits.shm", Limits(1, 0, 0, 0), clock)
    assert admit_outcome(limiter) == 0
    clock.now -= 3600
    assert admit_outcome(limiter) == 0


@pytest.mark.parametrize(
    ("limits", "held", "then", "expected"),
    [
        (Limits(0, 0, 2, 0), [(ORG, "key:a"), (ORG, "key:b")], (ORG, "key:c"), 1),
        (Limits(0, 0, 2, 0), [(ORG, "key:a"), (ORG, "key:b")], (OTHER_ORG, "key:a"), 0),
        (Limits(0, 0, 0, 1), [(ORG, "key:a")], (ORG, "key:a"), 1),
        (Limits(0, 0, 0, 1), [(ORG, "key:a")], (ORG, "key:b"), 0),
        (Limits(0, 0, 0, 1), [(ORG, "key:a")], (OTHER_ORG, "key:a"), 0),
    ],
    ids=[
        "org_full",
        "other_org_free",
        "principal_full",
        "other_principal_free",
        "principal_in_other_org_free",
    ],
)
def test_concurrency_keys(
    tmp_path: Path, limits: Limits, held: list[tuple[str, str]], then: tuple[str, str], expected: int
) -> None:
    limiter = TableLimiter(tmp_path / "limits.shm", limits)
    holders = [limiter.admit(*key) for key in held]
    for holder in holders:
        holder.__enter__()
    assert admit_outcome(limiter, *then) == expected
    for holder in holders:
        holder.__exit__(None, None, None)
    assert admit_outcome(limiter, *then) == 0


def test_slots_are_released_when_the_block_raises(tmp_path: Path) -> None:
    limiter = TableLimiter(tmp_path / "limits.shm", Limits(0, 0, 1, 1))
    with pytest.raises(ZeroDivisionError), limiter.admit(ORG, "key:a"):
        assert limiter.slots_held(ORG) == 1
        1 / 0  # noqa: B018
    assert limiter.slots_held(ORG) == 0


def test_a_stale_slot_is_reclaimed(tmp_path: Path) -> None:
    clock = Clock()
    limiter = TableLimiter(tmp_path / "limits.shm", Limits(0, 0, 1, 0, stale_slot_secs=120), clock)
    leaked = limiter.admit(ORG, "key:a")  # entered, never left: a leaked slot of a live process
    leaked.__enter__()
    clock.now += 119
    assert admit_outcome(limiter) == 1
    clock.now += 2
    assert admit_outcome(limiter) == 0


def test_without_limits_no_file_is_touched(tmp_path: Path) -> None:
    limiter = TableLimiter(tmp_path / "limits.shm", OFF)
    assert [admit_outcome(limiter) for _ in range(1000)] == [0] * 1000
    assert not (tmp_path / "limits.shm").exists()


def test_release_process_drops_its_slots(tmp_path: Path) -> None:
    limiter = TableLimiter(tmp_path / "limits.shm", Limits(0, 0, 5, 0))
    held = [limiter.admit(ORG, "key:a") for _ in range(3)]
    for holder in held:
        holder.__enter__()
    assert limiter.release_process(os.getpid()) == 3
    assert limiter.slots_held(ORG) == 0


@pytest.mark.parametrize("drop", ["release_process", "stale"])
def test_a_release_after_its_slot_was_dropped_keeps_later_slots(tmp_path: Path, drop: str) -> None:
    clock = Clock()
    limiter = TableLimiter(tmp_path / "limits.shm", Limits(0, 0, 1, 0, stale_slot_secs=120), clock)
    dropped = limiter.admit(ORG, "key:a")
    dropped.__enter__()
    if drop == "release_process":
        assert limiter.release_process(os.getpid()) == 1
    else:
        clock.now += 121  # the next admit finds the organization full and this slot leaked
    with limiter.admit(ORG, "key:b"):
        dropped.__exit__(None, None, None)
        assert limiter.slots_held(ORG) == 1


_SHAPE = Shape()


@pytest.mark.parametrize(
    "old",
    [
        b"",
        b"SQLite format 3\0" + bytes(4000),
        struct.pack("=8s4I", b"RPLIMITS", 0, _SHAPE.processes, _SHAPE.keys, _SHAPE.probe).ljust(
            _SHAPE.file_size, b"\0"
        ),
        Shape(processes=2, keys=8, probe=2).header.ljust(
            Shape(processes=2, keys=8, probe=2).file_size, b"\0"
        ),
        _SHAPE.header,  # this layout's header on a file cut short
    ],
    ids=["empty", "sqlite", "other_version", "other_shape", "truncated"],
)
def test_a_file_of_another_layout_is_replaced(tmp_path: Path, old: bytes) -> None:
    path = tmp_path / "limits.shm"
    path.write_bytes(old)
    before = path.stat().st_ino
    limiter = TableLimiter(path, Limits(1, 0, 0, 0), Clock())
    assert path.stat().st_ino != before
    assert (path.stat().st_size, path.read_bytes()[: len(_SHAPE.header)]) == (_SHAPE.file_size, _SHAPE.header)
    assert [admit_outcome(limiter), admit_outcome(limiter)] == [0, 60]
    assert [p.name for p in tmp_path.iterdir()] == ["limits.shm"]


def test_a_file_of_this_layout_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "limits.shm"
    assert admit_outcome(TableLimiter(path, Limits(1, 0, 0, 0), Clock())) == 0
    before = path.stat().st_ino
    assert admit_outcome(TableLimiter(path, Limits(1, 0, 0, 0), Clock())) == 60
    assert path.stat().st_ino == before


def test_a_full_probe_window_admits_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Four positions, every key's window all four: four organizations with a token spent fill it.
    limiter = TableLimiter(
        tmp_path / "limits.shm", Limits(1, 0, 0, 0), Clock(), shape=Shape(processes=2, keys=4, probe=4)
    )
    assert [admit_outcome(limiter, f"org-{n}") for n in range(4)] == [0] * 4
    with caplog.at_level(logging.WARNING, logger="proxy.runtime.table_limits"):
        assert [admit_outcome(limiter, "org-4") for _ in range(3)] == [0, 0, 0]
    assert [r.getMessage() for r in caplog.records] == [
        "no room in the limiter's tables; admitting the request unlimited"
    ]
    assert admit_outcome(limiter, "org-0") == 60


def test_unlimited_when_no_file_can_be_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="proxy.runtime.table_limits"):
        limiter = TableLimiter(tmp_path / "missing" / "limits.shm", Limits(1, 0, 1, 0), Clock())
        assert [admit_outcome(limiter), admit_outcome(limiter)] == [0, 0]
    assert len(caplog.records) == 2  # at start, then once a minute


def test_a_lock_held_too_long_admits_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    import proxy.runtime.limit_table

    monkeypatch.setattr(proxy.runtime.limit_table, "LOCK_WAIT_SECS", 0.05)
    path = tmp_path / "limits.shm"
    limiter = TableLimiter(path, Limits(1, 0, 0, 0), Clock())
    assert admit_outcome(limiter) == 0
    # A holder that never lets go: another open file description, as a stopped worker's would be.
    with path.open("rb") as stuck:
        fcntl.flock(stuck.fileno(), fcntl.LOCK_EX)
        with caplog.at_level(logging.WARNING, logger="proxy.runtime.table_limits"):
            assert admit_outcome(limiter) == 0  # over its rate, but the counters cannot be reached
        assert caplog.records, "a request admitted without its limits must be logged"
    assert admit_outcome(limiter) == 60  # the lock is free again: the rate holds


def _own_start() -> str:
    identity = process_identity(os.getpid())
    assert identity is not None
    return identity[1]


@pytest.mark.parametrize(
    ("pid", "started", "alive"),
    [
        ("self", "own", True),
        ("self", "", True),
        ("self", "12345", False),  # the pid was reused by another process
        ("gone", "", False),
    ],
)
def test_process_alive(pid: str, started: str, alive: bool) -> None:
    number = os.getpid() if pid == "self" else 2**22 + 17  # above the kernel's pid_max
    assert process_alive(number, _own_start() if started == "own" else started) is alive


# ---- across real processes -------------------------------------------------------------

_HOLDER = """
import sys, time
from pathlib import Path
from proxy.runtime.limits import Limits
from proxy.runtime.table_limits import TableLimiter
limiter = TableLimiter(Path(sys.argv[1]), Limits(0, 0, 1, 0))
held = limiter.admit(sys.argv[2], "key:a")
held.__enter__()
print("holding", flush=True)
time.sleep(60)
"""

_SPENDER = """
import sys
from pathlib import Path
from proxy.errors import TooManyRequests
from proxy.runtime.limits import Limits
from proxy.runtime.table_limits import TableLimiter
limiter = TableLimiter(Path(sys.argv[1]), Limits(10, 0, 0, 0))
admitted = 0
for _ in range(20):
    try:
        with limiter.admit(sys.argv[2], "key:a"):
            admitted += 1
    except TooManyRequests:
        pass
print(admitted)
"""


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)


def test_rate_holds_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "limits.shm")
    TableLimiter(Path(path), Limits(10, 0, 0, 0))  # create the file before the race
    spenders = [_python(_SPENDER, path, ORG) for _ in range(2)]
    counts = [int(spender.communicate(timeout=60)[0]) for spender in spenders]
    assert sum(counts) == 10


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_slots_of_a_killed_process_are_reclaimed(tmp_path: Path, reaped: bool) -> None:
    path = tmp_path / "limits.shm"
    limiter = TableLimiter(path, Limits(0, 0, 1, 0))
    holder = _python(_HOLDER, str(path), ORG)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        assert admit_outcome(limiter) == 1
    finally:
        os.kill(holder.pid, signal.SIGKILL)
    if reaped:
        holder.wait(timeout=10)
    else:
        while (process_identity(holder.pid) or ("Z",))[0] != "Z":
            pass
    assert admit_outcome(limiter) == 0
    assert limiter.slots_held(ORG) == 0
    holder.wait(timeout=10)


def _forked(work: Callable[[], int], go: int) -> tuple[int, int]:
    """(pid, pipe) of a child that runs `work` once `go` can be read, and writes its result."""
    result_read, result_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        result = -1
        try:
            os.read(go, 1)
            result = work()
        finally:
            os.write(result_write, str(result).encode())
            os._exit(0)  # never back into pytest in the child
    os.close(result_write)
    return pid, result_read


def _in_parallel_children(count: int, work: Callable[[], int]) -> list[int]:
    """What `work` returned in each of `count` children forked first and started together."""
    go_read, go_write = os.pipe()
    children = [_forked(work, go_read) for _ in range(count)]
    os.write(go_write, b"x" * count)
    results = []
    for pid, pipe in children:
        with os.fdopen(pipe) as reader:
            results.append(int(reader.read()))
        os.waitpid(pid, 0)
    os.close(go_read)
    os.close(go_write)
    return results


def _admitted(limiter: TableLimiter, attempts: int) -> int:
    return sum(admit_outcome(limiter) == 0 for _ in range(attempts))


def _peak_while_holding(limiter: TableLimiter, attempts: int) -> int:
    """The most slots of the organization seen while holding one, over `attempts` admits."""
    peak = 0
    for _ in range(attempts):
        try:
            with limiter.admit(ORG, "key:a"):
                peak = max(peak, limiter.slots_held(ORG))
        except TooManyRequests:
            pass
    return peak


def test_rate_is_exact_across_parallel_forked_processes(tmp_path: Path) -> None:
    limiter = TableLimiter(tmp_path / "limits.shm", Limits(1000, 0, 0, 0), Clock())
    assert sum(_in_parallel_children(4, lambda: _admitted(limiter, 500))) == 1000


def test_processes_racing_to_replace_a_file_end_up_sharing_one(tmp_path: Path) -> None:
    path = tmp_path / "limits.shm"
    path.write_bytes(b"SQLite format 3\0")
    admitted = _in_parallel_children(4, lambda: _admitted(TableLimiter(path, Limits(2, 0, 0, 0), Clock()), 2))
    assert sum(admitted) == 2


def test_slots_stay_exact_across_parallel_forked_processes(tmp_path: Path) -> None:
    limiter = TableLimiter(tmp_path / "limits.shm", Limits(0, 0, 2, 0))
    peaks = _in_parallel_children(4, lambda: _peak_while_holding(limiter, 1000))
    # On a busy machine one child may find both slots taken on every attempt: the promise is
    # the upper bound, and that slots were held at all.
    assert len(peaks) == 4 and all(peak <= 2 for peak in peaks) and max(peaks) >= 1, peaks
    assert limiter.slots_held(ORG) == 0


def _in_threads(count: int, work: Callable[[], int]) -> list[int]:
    """What `work` returned in each of `count` threads, switching as often as they can."""
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(work())) for _ in range(count)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # or the GIL would seldom switch inside the limiter's few µs
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        sys.setswitchinterval(interval)
    return results


def test_rate_is_exact_across_threads(tmp_path: Path) -> None:
    limiter = TableLimiter(tmp_path / "limits.shm", Limits(300, 0, 0, 0), Clock())
    assert sum(_in_threads(8, lambda: _admitted(limiter, 100))) == 300


def test_slots_stay_exact_across_threads(tmp_path: Path) -> None:
    limiter = TableLimiter(tmp_path / "limits.shm", Limits(0, 0, 3, 0))
    peaks = _in_threads(8, lambda: _peak_while_holding(limiter, 500))
    assert len(peaks) == 8 and all(1 <= peak <= 3 for peak in peaks), peaks
    assert limiter.slots_held(ORG) == 0


def _leak_a_slot(limiter: TableLimiter) -> bool:
    held = limiter.admit(ORG, "key:a")
    held.__enter__()
    os._exit(0)  # dies holding it


def test_a_full_process_table_frees_the_entries_of_dead_processes(tmp_path: Path) -> None:
    limiter = TableLimiter(
        tmp_path / "limits.shm", Limits(0, 0, 5, 0), shape=Shape(processes=2, keys=64, probe=4)
    )
    assert passes_in_forked_child(lambda: _leak_a_slot(limiter))
    assert passes_in_forked_child(lambda: _leak_a_slot(limiter))
    assert limiter.slots_held(ORG) == 2
    with limiter.admit(ORG, "key:a"):
        assert limiter.slots_held(ORG) == 1


def test_a_process_table_full_of_live_processes_admits_unlimited(tmp_path: Path) -> None:
    limiter = TableLimiter(
        tmp_path / "limits.shm", Limits(0, 0, 1, 0), shape=Shape(processes=1, keys=64, probe=4)
    )
    with limiter.admit(ORG, "key:a"):  # this process takes the only entry, and the only slot
        assert passes_in_forked_child(lambda: admit_outcome(limiter) == 0 and limiter.slots_held(ORG) == 1)
    assert admit_outcome(limiter) == 0


# ---- through the service ---------------------------------------------------------------


def test_limited_request_is_429_with_retry_after(tmp_path: Path) -> None:
    web = make_web(tmp_path, rate_limit_per_org_per_min=2)
    statuses = [web.client.post(url(), json=QUERY, headers=web.auth("a")).status_code for _ in range(2)]
    refused = web.client.post(url(), json=QUERY, headers=web.auth("b"))
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.json == {
        "detail": "More than 2 queries a minute for this organization.",
        "code": "too_many_requests",
    }
    assert refused.headers["Retry-After"] == "30"
    assert web.client.post(url(OTHER_ORG), json=QUERY, headers=web.auth("other")).status_code == 200


@pytest.mark.parametrize(
    ("who", "org"),
    [("a", ORG), ("jwt", ORG), ("both", OTHER_ORG), ("jwt", OTHER_ORG)],
)
def test_principal_rate_is_per_principal_and_org(tmp_path: Path, who: str, org: str) -> None:
    web = make_web(tmp_path, rate_limit_per_principal_per_min=1, rate_limit_per_org_per_min=0)
    assert web.client.post(url(org), json=QUERY, headers=web.auth(who)).status_code == 200
    assert web.client.post(url(org), json=QUERY, headers=web.auth(who)).status_code == 429
    others = {"a": "b", "jwt": "both", "both": "other"}
    other_org = OTHER_ORG if org == ORG else ORG
    assert web.client.post(url(org), json=QUERY, headers=web.auth(others[who])).status_code == 200
    if who in ("both", "jwt"):
        assert web.client.post(url(other_org), json=QUERY, headers=web.auth(who)).status_code == 200


@pytest.mark.parametrize(
    ("request_kind", "status"),
    [
        ("no_credentials", 401),
        ("other_org_key", 403),
        ("unknown_org", 404),
    ],
)
def test_limits_apply_after_authorization(tmp_path: Path, request_kind: str, status: int) -> None:
    web = make_web(tmp_path, rate_limit_per_org_per_min=1, max_concurrent_per_org=1)
    requests: dict[str, dict[str, Any]] = {
        "no_credentials": {"json": QUERY},
        "other_org_key": {"json": QUERY, "headers": web.auth("other")},
        "unknown_org": {
            "json": QUERY,
            "headers": web.auth("a"),
            "org": "9d4b7e2a-1111-4c39-9a2a-7a1f9f3c2d10",
        },
    }
    kwargs = requests[request_kind]
    org = kwargs.pop("org", ORG)
    # Refused requests charge nothing: the one token left is still there afterwards.
    assert [web.client.post(url(org), **kwargs).status_code for _ in range(3)] == [status] * 3
    assert web.client.post(url(), json=QUERY, headers=web.auth("a")).status_code == 200
    assert web.client.post(url(org), **kwargs).status_code == status  # still not 429


@pytest.mark.parametrize(
    ("request_kind", "status"),
    [("invalid_body", 400), ("not_json", 415), ("body_too_large", 413)],
)
def test_an_authorized_request_counts_against_the_rate_valid_or_not(
    tmp_path: Path, request_kind: str, status: int
) -> None:
    web = make_web(tmp_path, rate_limit_per_org_per_min=1)
    requests: dict[str, dict[str, Any]] = {
        "invalid_body": {"json": {"granularity": "day"}},
        "not_json": {"data": "x"},
        "body_too_large": {"data": b"{" * 70_000, "content_type": "application/json"},
    }
    kwargs = requests[request_kind]
    assert web.client.post(url(), headers=web.auth("a"), **kwargs).status_code == status
    assert [web.client.post(url(), headers=web.auth(who), json=QUERY).status_code for who in "ab"] == [
        429
    ] * 2


def test_a_flood_of_invalid_bodies_from_one_key_gets_429s(tmp_path: Path) -> None:
    web = make_web(tmp_path, rate_limit_invalid_per_principal_per_min=5)
    invalid = {"json": {"granularity": "day"}, "headers": web.auth("a")}
    statuses = [web.client.post(url(), **invalid).status_code for _ in range(20)]  # type: ignore[arg-type]
    assert statuses == [400] * 5 + [429] * 15
    refused = web.client.post(url(), json=QUERY, headers=web.auth("a"))
    assert (refused.status_code, refused.json["detail"]) == (
        429,
        "More than 5 invalid queries a minute for this credential.",
    )
    # Another key of the organization has a budget of its own.
    assert web.client.post(url(), json=QUERY, headers=web.auth("b")).status_code == 200


def _post_in_thread(web: Any, results: list[int], who: str = "a") -> threading.Thread:
    thread = threading.Thread(
        target=lambda: results.append(web.client.post(url(), json=QUERY, headers=web.auth(who)).status_code)
    )
    thread.start()
    return thread


def test_concurrent_queries_over_the_limit_are_429_and_explain_takes_no_slot(tmp_path: Path) -> None:
    backend = StubBackend(gate=threading.Event())
    web = make_web(tmp_path, backend, max_concurrent_per_org=1)
    results: list[int] = []
    thread = _post_in_thread(web, results)
    assert backend.entered.wait(10)
    refused = web.client.post(url(), json=QUERY, headers=web.auth("b"))
    explained = web.client.post(url(suffix="?explain=true"), json=QUERY, headers=web.auth("b"))
    backend.gate.set()  # type: ignore[union-attr]
    thread.join(10)
    assert (refused.status_code, refused.json["code"], refused.headers["Retry-After"]) == (
        429,
        "too_many_requests",
        "1",
    )
    assert explained.status_code == 200
    assert results == [200]
    assert web.client.post(url(), json=QUERY, headers=web.auth("b")).status_code == 200


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (None, 200),
        (BackendError("broken"), 502),
        (BackendTimeout("slow"), 504),
        (RuntimeError("bug"), 500),
        (KeyboardInterrupt(), None),
    ],
    ids=["ok", "backend_error", "timeout", "unexpected", "base_exception"],
)
def test_slot_is_released_on_every_exit_path(
    tmp_path: Path, error: BaseException | None, status: int | None
) -> None:
    web = make_web(
        tmp_path, StubBackend(error=error), max_concurrent_per_org=1, max_concurrent_per_principal=1
    )
    if status is None:
        with pytest.raises(type(error)):  # type: ignore[arg-type]
            web.client.post(url(), json=QUERY, headers=web.auth("a"))
    else:
        assert web.client.post(url(), json=QUERY, headers=web.auth("a")).status_code == status
    assert web.service.limiter.slots_held(ORG) == 0


@pytest.mark.parametrize(
    ("variable", "raw", "expected"),
    [
        ("RATE_LIMIT_PER_ORG_PER_MIN", "0", 0),
        ("RATE_LIMIT_PER_PRINCIPAL_PER_MIN", "120", 120),
        ("MAX_CONCURRENT_PER_ORG", "0", 0),
        ("MAX_CONCURRENT_PER_PRINCIPAL", "3", 3),
        ("MAX_CONCURRENT_PER_ORG", "-1", SettingsError),
        ("RATE_LIMIT_PER_ORG_PER_MIN", "many", SettingsError),
    ],
)
def test_limit_settings(variable: str, raw: str, expected: int | type[Exception]) -> None:
    environ = {f"PROXY_{variable}": raw}
    if isinstance(expected, int):
        assert getattr(load_settings(environ), variable.lower()) == expected
    else:
        with pytest.raises(expected, match=f"PROXY_{variable}"):
            load_settings(environ)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Limits(600, 300, 3, 3, 120.0, 60)),
        ({"PROXY_SERVING_SLOTS": "6"}, Limits(600, 300, 3, 3, 120.0, 60)),
        ({"PROXY_SERVING_SLOTS": "16"}, Limits(600, 300, 8, 8, 120.0, 60)),
        ({"PROXY_SERVING_SLOTS": "1"}, Limits(600, 300, 1, 1, 120.0, 60)),
        (
            {"PROXY_SERVING_SLOTS": "16", "PROXY_MAX_CONCURRENT_PER_PRINCIPAL": "2"},
            Limits(600, 300, 8, 2, 120.0, 60),
        ),
        ({"PROXY_MAX_CONCURRENT_PER_ORG": "0"}, Limits(600, 300, 0, 3, 120.0, 60)),
    ],
    ids=["serve_default", "six_slots", "sixteen_slots", "one_slot", "principal_set", "org_off"],
)
def test_concurrency_defaults_are_derived_from_the_serving_slots(
    environ: dict[str, str], expected: Limits
) -> None:
    assert Limits.from_settings(load_settings(environ)) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"PROXY_SERVING_SLOTS": "6", "PROXY_MAX_CONCURRENT_PER_ORG": "6"},
            "PROXY_MAX_CONCURRENT_PER_ORG=6: must leave others a slot of the 6",
        ),
        (
            {
                "PROXY_SERVING_SLOTS": "6",
                "PROXY_MAX_CONCURRENT_PER_ORG": "0",
                "PROXY_MAX_CONCURRENT_PER_PRINCIPAL": "8",
            },
            "PROXY_MAX_CONCURRENT_PER_PRINCIPAL=8: must leave others a slot of the 6",
        ),
        (
            {
                "PROXY_SERVING_SLOTS": "8",
                "PROXY_MAX_CONCURRENT_PER_ORG": "2",
                "PROXY_MAX_CONCURRENT_PER_PRINCIPAL": "3",
            },
            "PROXY_MAX_CONCURRENT_PER_PRINCIPAL=3: above the organization's PROXY_MAX_CONCURRENT_PER_ORG=2",
        ),
    ],
    ids=["org_holds_every_slot", "key_holds_every_slot", "key_above_org"],
)
def test_limits_that_let_one_caller_hold_the_host_stop_the_start(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=f"^{message}"):
        load_settings(environ)


def test_the_capacity_is_not_checked_while_the_slots_are_unknown() -> None:
    # The CLI's tooling reads the same settings and serves nothing.
    assert load_settings({"PROXY_MAX_CONCURRENT_PER_ORG": "64"}).max_concurrent_per_org == 64


def test_serve_refuses_limits_that_let_one_organization_hold_its_workers_threads(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from proxyctl.serve import serve

    env = {"PROXY_DATA_DIR": str(tmp_path), "PROXY_MAX_CONCURRENT_PER_ORG": "4"}
    result = CliRunner().invoke(serve, ["--workers", "2", "--threads", "2"], env=env)
    assert result.exit_code != 0
    assert "PROXY_MAX_CONCURRENT_PER_ORG=4: must leave others a slot of the 4" in result.output
