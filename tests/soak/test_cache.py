"""The result cache under real gunicorn workers, on the embedded engine (docs/cache.md).

- memory: a replay of distinct reports whose answers add up to several times
  PROXY_CACHE_MAX_BYTES keeps the store within its bound after every request: its volume
  (`reporting_proxy_cache_bytes`) and all its files on disk (database, write-ahead log and its
  index, answers kept as files); each worker's resident memory grows by less than the bound plus
  the interpreter's own allowance;
- single-flight: 20 identical requests released together over HTTP at 2 workers x 8 threads cost
  one backend query (`reporting_proxy_backend_duration_seconds_count`), the others take its
  answer: waiting on it (`reporting_proxy_cache_shared_total`) or stored after it.

Each case prints its figures (docs/cache.md records them).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from proxyctl.ingest.generator import organization_ids
from tests.support.served import clean_env, cli
from tests.support.soak import LIMITS_OFF, SETUP, SUMMARY, Server, post_query, rss_bytes, serving

pytestmark = pytest.mark.soak

SESSIONS = 100_000
SEED = 1212
KIB = 1024
MAX_BYTES = 512 * KIB
# Distinct reports of the memory replay, each sliding a day: a third of them large enough to be
# kept as files of their own (diskcache keeps an answer over 32 KiB outside its database).
DISTINCT = 90
SPANS = {"day": 120, "hour": 20, "fifteen_minute": 12}
# What a worker's memory may grow by over the replay besides the store's bound: the
# interpreter's own allocations and the answers being rendered (the store's database is mapped
# from its file, which the bound covers).
PYTHON_ALLOWANCE = 24 * 1024 * KIB
CONCURRENT = 20
TABLE: list[str] = []
SUMMARY["result cache (embedded, 2 workers x 8 threads)"] = TABLE
# Many buckets of many groups with exact distinct counts, a second or more of one core: the
# requests arrive while it runs.
SLOW = {
    "interval": {"start": "2019-01-01T00:00:00Z", "end": "2019-12-01T00:00:00Z"},
    "granularity": "day",
    "group_by": ["distinct_visited_urls", "distinct_landing_urls", "rooms"],
    "aggregations": [
        {"type": "count"},
        {"type": "hyperUnique", "fields": ["visitor_id"]},
        {"type": "hyperUnique", "fields": ["session_id"]},
    ],
    "order_by": [{"field": "count", "direction": "desc"}],
    "limit": 1000,
}


@dataclass(frozen=True)
class Served:
    """A server with a cache of its own over its own copy of the sessions, and a key."""

    server: Server
    organization: str
    token: str

    def ask(self, body: dict[str, Any], request_id: str) -> requests.Response:
        response, _ = post_query(self.server.base_url, self.organization, self.token, body, request_id)
        assert response.status_code == 200, response.text
        return response


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cache-soak") / "sessions.ndjson"
    started = time.monotonic()
    cli(clean_env(), "gen", "--sessions", str(SESSIONS), "--orgs", "1", "--seed", str(SEED), str(path))
    SETUP.append(f"{SESSIONS} sessions generated for the cache in {time.monotonic() - started:.0f} s")
    return path


@contextmanager
def served(sessions: Path, name: str, cache_max_bytes: int) -> Iterator[Served]:
    """Load the sessions into a data dir of the server's own (its cache lives there), serve it."""
    data_dir = sessions.parent / name
    env = clean_env(
        backend="embedded", data_dir=str(data_dir), cache_max_bytes=str(cache_max_bytes), **LIMITS_OFF
    )
    cli(env, "load", str(sessions))
    (organization,) = organization_ids(1, SEED)
    cli(env, "orgs", "add", organization, "--name", "cache")
    token = cli(env, "tokens", "create", "--org", organization).strip().splitlines()[-1]
    server = Server(name, env, sessions.parent / f"{name}.log", workers=2, threads=8)
    with serving(server):
        yield Served(server, organization, token)


@pytest.fixture
def bounded(sessions: Path) -> Iterator[Served]:
    with served(sessions, "bounded", MAX_BYTES) as server:
        yield server


@pytest.fixture
def shared(sessions: Path) -> Iterator[Served]:
    with served(sessions, "single-flight", 64 * 1024 * KIB) as server:
        yield server


def metrics(server: Server) -> dict[str, float]:
    """Every sample of the server's /metrics, summed by name and labels."""
    text = requests.get(f"{server.base_url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            name = f"{sample.name}{{{labels}}}" if labels else sample.name
            found[name] = found.get(name, 0.0) + sample.value
    return found


def replay_reports(first_offset: int) -> Iterator[dict[str, Any]]:
    """Distinct reports, each answer a few to some tens of KiB: together several times the bound."""
    first = date(2019, 1, 1)
    for offset in range(first_offset, first_offset + DISTINCT):
        start = first + timedelta(days=offset)
        granularity = list(SPANS)[offset % len(SPANS)]
        span = timedelta(days=SPANS[granularity])
        yield {
            "interval": {"start": f"{start}T00:00:00Z", "end": f"{start + span}T00:00:00Z"},
            "granularity": granularity,
            "aggregations": [{"type": "count"}, {"type": "avg", "fields": ["session_duration_secs"]}],
        }


def store_files(data_dir: Path) -> dict[str, int]:
    """Bytes on disk of the store's files: the database, its log and index, answers kept as files."""
    root = data_dir / "cache" / "results"
    # Read while the service evicts: a file or folder gone since it was listed counts 0.
    files = [Path(folder, name) for folder, _, names in os.walk(root) for name in names]
    database = {"cache.db", "cache.db-wal", "cache.db-shm"}
    sizes = {name: _size(root / name) for name in database}
    sizes["answer files"] = sum(_size(path) for path in files if path.name not in database)
    return sizes


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def test_a_replay_larger_than_the_cache_stays_within_its_bytes(bounded: Served) -> None:
    server = bounded.server
    # A first pass warms the engine (its buffers are the embedded engine's, bounded apart) and
    # fills the cache; the second asks other reports: the cache only turns over.
    for index, report in enumerate(replay_reports(0)):
        bounded.ask(report, f"warm-{index}")
    volumes, on_disk, answered = [], [], 0
    resident = {pid: rss_bytes(pid) for pid in server.worker_pids()}
    for index, report in enumerate(replay_reports(DISTINCT)):
        answered += len(bounded.ask(report, f"memory-{index}").content)
        volumes.append(metrics(server)["reporting_proxy_cache_bytes"])
        on_disk.append(store_files(Path(server.env["PROXY_DATA_DIR"])))
    grown = max(rss_bytes(pid) - before for pid, before in resident.items())
    evicted = metrics(server)["reporting_proxy_cache_evictions_total"]
    largest = max(on_disk, key=lambda files: sum(files.values()))
    TABLE.append(
        f"memory: {DISTINCT} more distinct answers, {answered / KIB:.0f} KiB in all, bound {MAX_BYTES / KIB:.0f} "
        f"KiB: {evicted:.0f} evicted; largest volume seen {max(volumes) / KIB:.0f} KiB; largest on disk "
        f"{sum(largest.values()) / KIB:.0f} KiB ("
        + ", ".join(f"{name} {size / KIB:.0f}" for name, size in largest.items())
        + f"); over the second pass a worker's resident memory grew by {grown / KIB:.0f} KiB at most"
    )
    print(TABLE[-1])
    assert answered > 3 * MAX_BYTES
    assert evicted > 0
    assert max(volumes) <= MAX_BYTES
    assert sum(largest.values()) <= MAX_BYTES
    assert grown <= MAX_BYTES + PYTHON_ALLOWANCE


def test_identical_concurrent_requests_cost_one_backend_query(shared: Served) -> None:
    before = metrics(shared.server)
    release = threading.Barrier(CONCURRENT)

    def ask(index: int) -> str:
        release.wait(timeout=30)
        return str(shared.ask(SLOW, f"flight-{index}").headers["X-Cache"])

    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENT) as pool:
        outcomes = sorted(pool.map(ask, range(CONCURRENT)))
    elapsed = time.monotonic() - started
    after = metrics(shared.server)

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    queries = grew("reporting_proxy_backend_duration_seconds_count{backend=embedded}")
    waited = grew("reporting_proxy_cache_shared_total")
    TABLE.append(
        f"single-flight: {CONCURRENT} identical requests at once in {elapsed:.2f} s: {queries:.0f} backend "
        f"query, outcomes {outcomes.count('miss')} miss + {outcomes.count('hit')} hit, {waited:.0f} of the "
        f"hits waited on the running query"
    )
    print(TABLE[-1])
    assert queries == 1
    assert outcomes == ["hit"] * (CONCURRENT - 1) + ["miss"]
    assert grew("reporting_proxy_cache_requests_total{outcome=miss}") == 1
    assert waited >= 1
