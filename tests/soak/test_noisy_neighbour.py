"""Noisy neighbour, on each engine, through `reporting-proxy serve` as deployed (nginx in front of
gunicorn, 2 workers x 4 threads): one key floods heavy queries (grouped over array dimensions, a
year by day) from as many connections as it likes for 30 s, while another organization asks
light ones. The flooder gets 429s past its share of the serving slots; the neighbour's queries
all answer 200 with p95 within 1.5 s (generous: the machine has 2 shared cores).

Figures go to the run's summary and docs/operations.md ("Limits").
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import Any

import pytest
import requests

from proxyctl.ingest.generator import generate, organization_ids
from tests.support.served import ROUTE, Dataset, Service, start_service
from tests.support.soak import SUMMARY

pytestmark = pytest.mark.soak

SEED = 20191111
SESSIONS = 60_000
FLOOD_SECS = 30.0
FLOOD_CONNECTIONS = 16
LIGHT_P95_SECS = 1.5
FIRST_DAY = date(2019, 1, 1)
HEAVY = {
    "interval": {"start": "2019-01-01T00:00:00Z", "end": "2020-01-01T00:00:00Z"},
    "granularity": "day",
    "group_by": ["distinct_visited_urls", "distinct_search_terms", "rooms"],
    "limit": 1000,
}
# With a sketch per group the local Druid's merge buffers refuse the query at once: a count there.
HEAVY_AGGREGATIONS = {
    "embedded": [{"type": "count"}, {"type": "hyperUnique", "fields": ["visitor_id"]}],
    "druid": [{"type": "count"}],
}
LIGHT = {
    "interval": {"start": "2019-06-01T00:00:00Z", "end": "2019-06-08T00:00:00Z"},
    "granularity": "all",
    "aggregations": [{"type": "count"}],
}
# Rates off: the concurrency share is the subject, and the flooder's request rate is unbounded.
# The result cache off: every query, heavy or light, runs on the engine.
ENV = {
    "PROXY_RATE_LIMIT_PER_ORG_PER_MIN": "0",
    "PROXY_RATE_LIMIT_PER_PRINCIPAL_PER_MIN": "0",
    "PROXY_CACHE_MAX_BYTES": "0",
}
DRUID_ENV = {**ENV, "PROXY_DRUID_DATASOURCE": "visitor_sessions_noisy"}


def _day(offset: int) -> str:
    return f"{FIRST_DAY + timedelta(days=offset)}T00:00:00Z"


def heavy(engine: str) -> dict[str, Any]:
    """The heavy query, its start moved by up to a month so that no engine cache answers it."""
    interval = {"start": _day(random.randrange(31)), "end": _day(365)}
    return {**HEAVY, "interval": interval, "aggregations": HEAVY_AGGREGATIONS[engine]}


def light() -> dict[str, Any]:
    """The light query over a random week of the year, for the same reason."""
    start = random.randrange(358)
    return {**LIGHT, "interval": {"start": _day(start), "end": _day(start + 7)}}


@pytest.fixture(scope="module")
def year_of_two_orgs(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    path = tmp_path_factory.mktemp("noisy-data") / "sessions.ndjson"
    generate(path, sessions=SESSIONS, orgs=2, seed=SEED, start=date(2019, 1, 1), days=365)
    return Dataset(path, [], organization_ids(2, SEED))


@pytest.fixture(scope="module", params=["embedded", "druid"])
def served(
    request: pytest.FixtureRequest, year_of_two_orgs: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    engine = request.param
    data_dir = tmp_path_factory.mktemp(f"noisy-{engine}")
    env = DRUID_ENV if engine == "druid" else ENV
    yield from start_service(engine, year_of_two_orgs, data_dir, env, front=True)


@dataclass
class Tally:
    """What one side of the run saw: statuses, and the latency of each answer."""

    statuses: Counter[int] = field(default_factory=Counter)
    answered: list[float] = field(default_factory=list)  # seconds of each 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, seconds: float) -> None:
        with self.lock:
            self.statuses[status] += 1
            if status == 200:
                self.answered.append(seconds)

    def percentile(self, q: float) -> float:
        """Of the answered (200) requests' latencies; infinite if none was answered."""
        ordered = sorted(self.answered) or [float("inf")]
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ask(
    session: requests.Session, service: Service, organization: str, body: Callable[[], Any], tally: Tally
) -> None:
    started = time.monotonic()
    response = session.post(
        service.base_url + ROUTE.format(organization),
        json=body(),
        headers={"Authorization": f"Token {service.tokens[organization]}"},
        timeout=60,
    )
    tally.add(response.status_code, time.monotonic() - started)
    if response.status_code == 429:
        time.sleep(0.05)  # an impatient flooder: retries at once, not after Retry-After


def _loop(service: Service, organization: str, body: Callable[[], Any], tally: Tally, until: float) -> None:
    with requests.Session() as session:
        while time.monotonic() < until:
            _ask(session, service, organization, body, tally)


def _run(service: Service) -> tuple[Tally, Tally]:
    flooder, neighbour = tuple(service.tokens)[:2]
    flood, asked = Tally(), Tally()
    until = time.monotonic() + FLOOD_SECS
    threads = [
        threading.Thread(target=_loop, args=(service, flooder, partial(heavy, service.backend), flood, until))
        for _ in range(FLOOD_CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # the flood holds its share before the neighbour starts
    _loop(service, neighbour, light, asked, until)
    for thread in threads:
        thread.join(90)
    return flood, asked


def test_a_flooding_key_leaves_the_other_organization_its_share(
    served: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    flood, asked = _run(served)
    lines = [
        f"flooder ({FLOOD_CONNECTIONS} connections, heavy): {dict(sorted(flood.statuses.items()))}, "
        f"200s p50 {flood.percentile(0.5):.2f} s",
        f"neighbour (1 connection, light): {dict(sorted(asked.statuses.items()))}, "
        f"p50 {asked.percentile(0.5) * 1000:.0f} ms, p95 {asked.percentile(0.95) * 1000:.0f} ms, "
        f"max {asked.percentile(1.0) * 1000:.0f} ms",
    ]
    SUMMARY[f"noisy neighbour, {served.backend}: one key floods {FLOOD_SECS:.0f} s, serve 2x4"] = lines
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert set(asked.statuses) == {200}, asked.statuses
    assert asked.percentile(0.95) <= LIGHT_P95_SECS
    assert flood.statuses[429] > 0
