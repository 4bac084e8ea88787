"""Noisy neighbour, on each engine, through `reporting-proxy serve` as deployed (nginx in front of
gunicorn, 2 workers x 4 threads): one key floods heavy queries (grouped over array dimensions, a
year by day) from as many connections as it likes for 30 s, while another organization asks
light ones. The flooder gets 429s past its share of the serving slots; the neighbour's queries
all answer 200 with p95 within 1.5 s (generous: the machine has 2 shared cores).

Figures go to the run's summary and docs/operations.md ("Limits").
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

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
YEAR = {"start": "2019-01-01T00:00:00Z", "end": "2020-01-01T00:00:00Z"}
HEAVY = {
    "interval": YEAR,
    "granularity": "day",
    "group_by": ["distinct_visited_urls", "distinct_search_terms", "rooms"],
    "aggregations": [{"type": "count"}, {"type": "hyperUnique", "fields": ["visitor_id"]}],
    "limit": 1000,
}
LIGHT = {
    "interval": {"start": "2019-06-01T00:00:00Z", "end": "2019-06-08T00:00:00Z"},
    "granularity": "all",
    "aggregations": [{"type": "count"}],
}
# Rates off: the concurrency share is the subject, and the flooder's request rate is unbounded.
ENV = {"PROXY_RATE_LIMIT_PER_ORG_PER_MIN": "0", "PROXY_RATE_LIMIT_PER_PRINCIPAL_PER_MIN": "0"}
DRUID_ENV = {**ENV, "PROXY_DRUID_DATASOURCE": "visitor_sessions_noisy"}


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
    seconds: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, seconds: float) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.seconds.append(seconds)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ask(session: requests.Session, service: Service, organization: str, body: object, tally: Tally) -> None:
    started = time.monotonic()
    response = session.post(
        service.base_url + ROUTE.format(organization),
        json=body,
        headers={"Authorization": f"Token {service.tokens[organization]}"},
        timeout=60,
    )
    tally.add(response.status_code, time.monotonic() - started)
    if response.status_code == 429:
        time.sleep(0.05)  # an impatient flooder: retries at once, not after Retry-After


def _loop(service: Service, organization: str, body: object, tally: Tally, until: float) -> None:
    with requests.Session() as session:
        while time.monotonic() < until:
            _ask(session, service, organization, body, tally)


def _run(service: Service) -> tuple[Tally, Tally]:
    flooder, neighbour = tuple(service.tokens)[:2]
    heavy, light = Tally(), Tally()
    until = time.monotonic() + FLOOD_SECS
    threads = [
        threading.Thread(target=_loop, args=(service, flooder, HEAVY, heavy, until))
        for _ in range(FLOOD_CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # the flood holds its share before the neighbour starts
    _loop(service, neighbour, LIGHT, light, until)
    for thread in threads:
        thread.join(90)
    return heavy, light


def test_a_flooding_key_leaves_the_other_organization_its_share(
    served: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    heavy, light = _run(served)
    lines = [
        f"flooder ({FLOOD_CONNECTIONS} connections, heavy): {dict(sorted(heavy.statuses.items()))}, "
        f"p50 {heavy.percentile(0.5):.2f} s",
        f"neighbour (1 connection, light): {dict(sorted(light.statuses.items()))}, "
        f"p50 {light.percentile(0.5) * 1000:.0f} ms, p95 {light.percentile(0.95) * 1000:.0f} ms, "
        f"max {max(light.seconds) * 1000:.0f} ms",
    ]
    SUMMARY[f"noisy neighbour, {served.backend}: one key floods {FLOOD_SECS:.0f} s, serve 2x4"] = lines
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert set(light.statuses) == {200}, light.statuses
    assert light.percentile(0.95) <= LIGHT_P95_SECS
    assert heavy.statuses[429] > 0
