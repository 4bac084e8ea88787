"""The embedded engine bounded and stoppable, under gunicorn on 300k generated sessions.

- deadline: a heavy query past a short budget is a 504, and the worker's CPU is idle again
  within IDLE_WITHIN_SECS of the answer;
- hang-up: the caller closes its socket mid-query; the access log says 499 and the worker's CPU
  is idle again within IDLE_WITHIN_SECS of the close;
- over memory: a server with 8 MB and no spill answers 400 query_too_expensive;
- memory: six heavy queries at once on 3 workers x 2 threads; each worker's resident memory
  stays under the DuckDB limit plus PYTHON_ALLOWANCE_MIB, and comes back within
  RETURN_SLACK_MIB of where it was with its engine open and warm (light queries first).

Each case prints its figures (docs/operations.md, "Embedded engine", records them).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from proxyctl.ingest.generator import organization_ids
from tests.support.queries import FIVE_ARRAYS_YEAR_DAILY
from tests.support.served import ROUTE, clean_env, cli
from tests.support.soak import LIMITS_OFF, SETUP, SUMMARY, Server, cpu_seconds, post_query, rss_bytes, serving

pytestmark = pytest.mark.soak

SESSIONS = 300_000
SEED = 11
MIB = 1024 * 1024
MEMORY_LIMIT_MIB = 256  # PROXY_EMBEDDED_MEMORY_LIMIT_MB's default
# What a worker holds besides DuckDB's buffers: the interpreter and the app (~65 MiB at start),
# DuckDB's allocations outside its buffer manager, and the answers being rendered.
PYTHON_ALLOWANCE_MIB = 160
RETURN_SLACK_MIB = 48
IDLE_WITHIN_SECS = 1.0
SHORT_BUDGET_SECS = 1.5
HANG_UP_AFTER_SECS = 1.5
# A window of the worker's CPU counts as busy at a third of a core or more.
SAMPLE_SECS = 0.1
BUSY_CPU_SECS = SAMPLE_SECS / 3
WATCH_SECS = 3.0
HEAVY = FIVE_ARRAYS_YEAR_DAILY
# The same with exact distinct counts: several seconds of one core, so that a stop shows.
LONG = {
    **HEAVY,
    "aggregations": [
        {"type": "count"},
        {"type": "hyperUnique", "fields": ["visitor_id"]},
        {"type": "hyperUnique", "fields": ["session_id"]},
    ],
}
LIGHT = {
    "interval": {"start": "2019-06-01T00:00:00Z", "end": "2019-07-01T00:00:00Z"},
    "granularity": "day",
    "group_by": ["device_type"],
    "aggregations": [{"type": "count"}],
}
TABLE: list[str] = []
SUMMARY["embedded engine bounds (3 workers x 2 threads, 300k sessions, 5-array group-by by day)"] = TABLE


@dataclass(frozen=True)
class Loaded:
    """The generated sessions loaded into an embedded data directory, with a key."""

    data_dir: Path
    organization: str
    token: str

    def server(self, name: str, **settings: str) -> Server:
        env = clean_env(backend="embedded", data_dir=str(self.data_dir), **{**LIMITS_OFF, **settings})
        return Server(name, env, self.data_dir / f"{name}.log", workers=3, threads=2)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    data_dir = tmp_path_factory.mktemp("embedded-bounds")
    env = clean_env(backend="embedded", data_dir=str(data_dir))
    path = data_dir / "sessions.ndjson"
    started = time.monotonic()
    cli(env, "gen", "--sessions", str(SESSIONS), "--orgs", "1", "--seed", str(SEED), str(path))
    cli(env, "load", str(path))
    (organization,) = organization_ids(1, SEED)
    SETUP.append(f"{SESSIONS} sessions generated and loaded embedded in {time.monotonic() - started:.0f} s")
    cli(env, "orgs", "add", organization, "--name", "bounds")
    token = cli(env, "tokens", "create", "--org", organization).strip().splitlines()[-1]
    return Loaded(data_dir, organization, token)


@pytest.fixture(scope="module")
def short(loaded: Loaded) -> Iterator[Server]:
    server = loaded.server("short-budget", request_timeout_secs=str(SHORT_BUDGET_SECS))
    with serving(server):
        yield server


@pytest.fixture(scope="module")
def patient(loaded: Loaded) -> Iterator[Server]:
    server = loaded.server("patient", request_timeout_secs="120")
    with serving(server):
        yield server


@pytest.fixture(scope="module")
def cramped(loaded: Loaded) -> Iterator[Server]:
    server = loaded.server("cramped", embedded_memory_limit_mb="8", embedded_spill_limit_mb="0")
    with serving(server):
        yield server


def _cpu(server: Server) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in server.worker_pids()}


def _busy_until(server: Server, since: float) -> tuple[float, float]:
    """Seconds from `since` to the end of the last busy sample of any worker within WATCH_SECS
    (0: idle from the first sample), and the CPU seconds all workers used from IDLE_WITHIN_SECS on."""
    last_busy, late_cpu = 0.0, 0.0
    before = _cpu(server)
    while (now := time.monotonic()) - since < WATCH_SECS:
        time.sleep(SAMPLE_SECS)
        after = _cpu(server)
        used = max(after[pid] - before.get(pid, after[pid]) for pid in after)
        if used >= BUSY_CPU_SECS:
            last_busy = time.monotonic() - since
        if now - since >= IDLE_WITHIN_SECS:
            late_cpu += sum(after[pid] - before.get(pid, after[pid]) for pid in after)
        before = after
    return last_busy, late_cpu


def _raw_request(server: Server, loaded: Loaded, body: dict[str, object]) -> bytes:
    payload = orjson.dumps(body)
    head = (
        f"POST {ROUTE.format(loaded.organization)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Token {loaded.token}\r\nContent-Type: application/json\r\n"
        f"X-Request-Id: hang-up\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def test_a_query_past_its_deadline_stops_within_a_second(short: Server, loaded: Loaded) -> None:
    response, seconds = post_query(short.base_url, loaded.organization, loaded.token, LONG, "deadline")
    answered = time.monotonic()
    busy, late_cpu = _busy_until(short, answered)
    TABLE.append(
        f"deadline {SHORT_BUDGET_SECS:g} s: {response.status_code} {response.json().get('code')} after "
        f"{seconds:.2f} s; worker busy until {busy:.2f} s after the answer, "
        f"{late_cpu:.2f} CPU s from {IDLE_WITHIN_SECS:g} s to {WATCH_SECS:g} s"
    )
    assert (response.status_code, response.json()["code"]) == (504, "backend_timeout")
    assert busy <= IDLE_WITHIN_SECS


def test_a_query_whose_caller_hangs_up_stops_within_a_second(patient: Server, loaded: Loaded) -> None:
    with socket.create_connection(("127.0.0.1", patient.port)) as caller:
        caller.sendall(_raw_request(patient, loaded, LONG))
        time.sleep(HANG_UP_AFTER_SECS)
        cpu_before_close = _cpu(patient)
    closed = time.monotonic()
    busy, late_cpu = _busy_until(patient, closed)
    working = max(cpu_seconds(pid) - cpu_before_close[pid] for pid in cpu_before_close)
    logged = _wait_for(lambda: '"status": 499' in patient.log_text() or '"status":499' in patient.log_text())
    TABLE.append(
        f"hang-up after {HANG_UP_AFTER_SECS:g} s: worker busy until {busy:.2f} s after the close "
        f"({working:.2f} CPU s in all after it), {late_cpu:.2f} CPU s from {IDLE_WITHIN_SECS:g} s "
        f"to {WATCH_SECS:g} s; 499 logged: {logged}"
    )
    assert busy <= IDLE_WITHIN_SECS
    assert logged


def _wait_for(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


class _PeakRss:
    """Samples every worker's resident memory in the background; the highest seen of each."""

    def __init__(self, pids: list[int]) -> None:
        self.peaks = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for pid in self.peaks:
                self.peaks[pid] = max(self.peaks[pid], rss_bytes(pid))


def _warm(server: Server, loaded: Loaded) -> None:
    """Light queries on every slot, so that each worker has its DuckDB instance open."""
    with ThreadPoolExecutor(12) as pool:
        list(
            pool.map(
                lambda n: post_query(server.base_url, loaded.organization, loaded.token, LIGHT, f"warm-{n}"),
                range(24),
            )
        )


def test_six_heavy_queries_stay_under_the_memory_limit_and_give_it_back(
    patient: Server, loaded: Loaded
) -> None:
    pids = patient.worker_pids()
    _warm(patient, loaded)
    start = {pid: rss_bytes(pid) for pid in pids}
    with _PeakRss(pids) as peak, ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(
                lambda n: post_query(
                    patient.base_url, loaded.organization, loaded.token, HEAVY, f"heavy-{n}"
                ),
                range(6),
            )
        )
    time.sleep(1.0)
    after = {pid: rss_bytes(pid) for pid in pids}
    statuses = sorted(response.status_code for response, _ in answers)
    slowest = max(seconds for _, seconds in answers)
    TABLE.append(
        f"six at once: statuses {statuses}, slowest {slowest:.1f} s; RSS MiB before/peak/after per worker:"
    )
    TABLE.extend(
        f"  worker {pid}: {start[pid] / MIB:6.0f} {peak.peaks[pid] / MIB:6.0f} {after[pid] / MIB:6.0f}"
        for pid in pids
    )
    assert statuses == [200] * 6
    assert max(peak.peaks.values()) < (MEMORY_LIMIT_MIB + PYTHON_ALLOWANCE_MIB) * MIB
    assert all(after[pid] - start[pid] < RETURN_SLACK_MIB * MIB for pid in pids)


def test_a_query_over_its_memory_is_a_clear_400(cramped: Server, loaded: Loaded) -> None:
    response, seconds = post_query(cramped.base_url, loaded.organization, loaded.token, HEAVY, "cramped")
    TABLE.append(
        f"over memory (8 MB, no spill): {response.status_code} {response.json().get('code')} in {seconds:.2f} s"
    )
    assert (response.status_code, response.json()["code"]) == (400, "query_too_expensive")
