"""Two hosts, one truth: two `reporting-proxy serve` instances (nginx and gunicorn each, own port,
own data directory, the same small data in each embedded engine) sharing one real PostgreSQL for
the access store and the limits.

The PostgreSQL is a cluster of this module's own (`reporting-proxy postgres up` with its own
state directory and port), never the shared local one: it is stopped in the middle of a run.
Host A fails open, host B fails closed, so one outage shows both documented behaviours. Two more
hosts, C and D, run the Druid backend against a stub broker whose answers take as long as a test
says (concurrency slots) or carry an ETag (the shared result cache).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from proxyctl.ingest.generator import generate, organization_ids
from tests.support.front import serve_command
from tests.support.net import free_port
from tests.support.served import ROUTE, clean_env, cli, wait_healthy
from tests.support.soak import SUMMARY
from tests.support.stub_broker import Answer, StubBroker, stub_broker

pytestmark = pytest.mark.soak

SEED = 20190416
RATE_PER_MIN = 30
SLOTS = 3
SLOW_SECS = 5.0  # longer than 12 requests take to arrive on a busy 2-core machine
SECRET = "several-hosts-test-secret-of-32-bytes!"
QUERY = {
    "interval": {"start": "2019-03-01T00:00:00Z", "end": "2019-04-01T00:00:00Z"},
    "granularity": "all",
    "aggregations": [{"type": "count"}],
}
TABLE: list[str] = []
SUMMARY["several hosts, one PostgreSQL (status counts as seen by the callers)"] = TABLE


@dataclass(frozen=True)
class Host:
    name: str
    base_url: str
    env: Mapping[str, str]

    def post(self, organization: str, authorization: str, body: Any = QUERY) -> requests.Response:
        return requests.post(
            self.base_url + ROUTE.format(organization),
            json=body,
            headers={"Authorization": authorization},
            timeout=30,
        )

    def cli(self, *args: str) -> str:
        return cli(self.env, *args)


@dataclass(frozen=True)
class Postgres:
    state_dir: Path
    port: int

    @property
    def options(self) -> tuple[str, ...]:
        return ("--state-dir", str(self.state_dir), "--port", str(self.port))

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/reporting"

    def up(self) -> None:
        cli(clean_env(), "postgres", "up", *self.options, timeout=120)

    def down(self) -> None:
        cli(clean_env(), "postgres", "down", *self.options, timeout=120)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    # Under /var/tmp: as root the server runs as `postgres`, which cannot enter pytest's tmp dirs.
    parent = Path(tempfile.mkdtemp(prefix="several-hosts-", dir="/var/tmp"))
    parent.chmod(0o755)
    own = Postgres(parent / "postgres", free_port())
    try:
        own.up()
        yield own
    finally:
        own.down()  # stops only what `up` recorded in this state dir, if anything
        shutil.rmtree(parent, ignore_errors=True)


def _serve(name: str, env: Mapping[str, str], data_dir: Path) -> Iterator[Host]:
    port = free_port()
    with (data_dir / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            serve_command(port, workers=2, threads=4), env=env, stdout=subprocess.DEVNULL, stderr=log
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process, 60, f"host {name}")
        yield Host(name, base_url, env)
    finally:
        process.terminate()
        process.wait(timeout=60)


def _host_env(data_dir: Path, url: str, **settings: str) -> dict[str, str]:
    return clean_env(
        data_dir=str(data_dir),
        access_database_url=url,
        limits_database_url=url,
        jwt_algorithm="HS256",
        jwt_secret=SECRET,
        rate_limit_invalid_per_principal_per_min="0",
        request_timeout_secs="20",
        **settings,
    )


@pytest.fixture(scope="module")
def hosts(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Host, Host]]:
    """A (fails open) and B (fails closed) on the embedded engine, an organization's rate of
    RATE_PER_MIN, no concurrency limits; the same generated sessions loaded into each."""
    sessions = tmp_path_factory.mktemp("several-hosts-data") / "sessions.ndjson"
    generate(sessions, sessions=3_000, orgs=2, seed=SEED)
    limits = {
        "backend": "embedded",
        "rate_limit_per_org_per_min": str(RATE_PER_MIN),
        "rate_limit_per_principal_per_min": "0",
        "max_concurrent_per_org": "0",
        "max_concurrent_per_principal": "0",
    }
    envs = []
    for name, on_error in (("a", "open"), ("b", "closed")):
        data_dir = tmp_path_factory.mktemp(f"host-{name}")
        envs.append(
            (name, data_dir, _host_env(data_dir, postgres.url, limits_on_store_error=on_error, **limits))
        )
        cli(envs[-1][2], "load", str(sessions))
    (name_a, dir_a, env_a), (name_b, dir_b, env_b) = envs
    yield from _pair(_serve(name_a, env_a, dir_a), _serve(name_b, env_b, dir_b))


def _pair(first: Iterator[Host], second: Iterator[Host]) -> Iterator[tuple[Host, Host]]:
    a = next(first)
    try:
        b = next(second)
        try:
            yield a, b
        finally:
            second.close()
    finally:
        first.close()


def _new_org(host: Host, organization: str | None = None) -> tuple[str, str, str]:
    """An organization and a key created through `host`'s CLI: (org, key id, Authorization)."""
    organization = organization or str(uuid.uuid4())
    host.cli("orgs", "add", organization, "--name", "several hosts")
    key = host.cli("tokens", "create", "--org", organization).strip().splitlines()[-1]
    return organization, key.split("_")[1], f"Token {key}"  # rpk_<id>_<secret>


def _bearer(organization: str) -> str:
    claims = {"sub": "several-hosts", "orgs": [organization], "exp": int(time.time()) + 3600}
    return "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")


def test_an_organization_and_key_made_through_a_are_accepted_by_b(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    with_data, _, key = _new_org(a, organization_ids(2, SEED)[0])
    answers = [host.post(with_data, key) for host in (a, b)]
    assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["data"][0][-1] > 0  # the same sessions in both engines, not zeros


def test_a_revocation_through_a_is_a_401_on_b_at_the_next_request(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    organization, key_id, key = _new_org(a)
    assert b.post(organization, key).status_code == 200
    a.cli("tokens", "revoke", key_id)
    refused = b.post(organization, key)
    assert (refused.status_code, refused.json()["code"]) == (401, "not_authenticated")


def test_an_organization_rate_counts_once_across_both_hosts(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    organization, _, key = _new_org(a)
    started = time.monotonic()
    statuses = [(a, b)[n % 2].post(organization, key).status_code for n in range(2 * RATE_PER_MIN)]
    elapsed = time.monotonic() - started
    admitted = statuses.count(200)
    # A token comes back every 60 / RATE_PER_MIN s while the run lasts.
    slack = math.ceil(elapsed * RATE_PER_MIN / 60)
    TABLE.append(
        f"rate {RATE_PER_MIN}/min, {len(statuses)} requests alternating A/B in {elapsed:.1f} s: "
        f"{dict(Counter(statuses))} (admitted {admitted}, allowed {RATE_PER_MIN}..{RATE_PER_MIN + slack})"
    )
    print(TABLE[-1])
    assert set(statuses) <= {200, 429}
    assert RATE_PER_MIN <= admitted <= RATE_PER_MIN + slack


@dataclass(frozen=True)
class DruidHosts:
    """Hosts C and D on the Druid backend, and the stub broker both ask."""

    hosts: tuple[Host, Host]
    broker: StubBroker


@pytest.fixture(scope="module")
def druid_hosts(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DruidHosts]:
    """Two more hosts on the Druid backend against a stub broker (so that a query's length does
    not depend on this machine's load), SLOTS queries per organization, no rates, and the result
    cache's answers in the shared PostgreSQL."""
    with stub_broker() as broker:
        limits = {
            "backend": "druid",
            "druid_broker_url": broker.url,
            "rate_limit_per_org_per_min": "0",
            "rate_limit_per_principal_per_min": "0",
            "max_concurrent_per_org": str(SLOTS),
            "max_concurrent_per_principal": "0",
            "cache_max_bytes": str(2**20),
            "cache_database_url": postgres.url,
        }
        dirs = [tmp_path_factory.mktemp(f"druid-host-{name}") for name in "cd"]
        envs = [_host_env(data_dir, postgres.url, **limits) for data_dir in dirs]
        for pair in _pair(_serve("c", envs[0], dirs[0]), _serve("d", envs[1], dirs[1])):
            yield DruidHosts(pair, broker)


def test_concurrency_slots_count_once_across_both_hosts(druid_hosts: DruidHosts) -> None:
    druid_hosts.broker.on("POST", "/druid/v2/", Answer(body=b"[]", delay_secs=SLOW_SECS))
    c, d = druid_hosts.hosts
    organization, _, key = _new_org(c)
    callers = 4 * SLOTS
    with ThreadPoolExecutor(callers) as pool:
        answers = list(pool.map(lambda n: (c, d)[n % 2].post(organization, key), range(callers)))
    statuses = Counter(answer.status_code for answer in answers)
    TABLE.append(
        f"{SLOTS} slots, {callers} slow queries ({SLOW_SECS:g} s) at once over hosts C/D: {dict(statuses)}"
    )
    print(TABLE[-1])
    assert statuses == {200: SLOTS, 429: callers - SLOTS}
    refusals = {answer.json()["detail"] for answer in answers if answer.status_code == 429}
    assert refusals == {f"{SLOTS} queries of this organization are already running."}


def test_an_answer_computed_on_c_is_served_from_the_shared_cache_on_d(druid_hosts: DruidHosts) -> None:
    """D finds C's stored answer and revalidates it with the broker (a 304, nothing run)."""
    druid_hosts.broker.on("POST", "/druid/v2/", Answer(body=b"[]", etag='"v1"', revalidates=True))
    c, d = druid_hosts.hosts
    organization, _, key = _new_org(c)
    first, second = c.post(organization, key), d.post(organization, key)
    assert (first.status_code, first.headers["X-Cache"]) == (200, "miss")
    assert (second.status_code, second.headers["X-Cache"], second.json()) == (200, "hit", first.json())
    queries = [r for r in druid_hosts.broker.received if r.line == "POST /druid/v2/"]
    # C's query was computed; D's only asked whether C's tag is current.
    assert queries[-2].if_none_match != '"v1"'
    assert queries[-1].if_none_match == '"v1"'
    TABLE.append(
        f"shared result cache: C {first.headers['X-Cache']}, D {second.headers['X-Cache']} (broker: 304)"
    )


def _poll(
    hosts: tuple[Host, Host], organization: str, authorization: str, rounds: int
) -> dict[str, Counter[str]]:
    """`rounds` requests to each host, alternating: each host's answers as `status code`."""
    seen: dict[str, Counter[str]] = {host.name: Counter() for host in hosts}
    for _ in range(rounds):
        for host in hosts:
            answer = host.post(organization, authorization)
            code = answer.json().get("code", "") if answer.status_code != 200 else ""
            seen[host.name][f"{answer.status_code} {code}".strip()] += 1
    return seen


def _readiness(hosts: tuple[Host, Host]) -> list[tuple[int, str]]:
    answers = [requests.get(f"{host.base_url}/readyz", timeout=10) for host in hosts]
    return [(answer.status_code, answer.json().get("limits") or answer.json()["code"]) for answer in answers]


def _all_counted(
    hosts: tuple[Host, Host], organization: str, credentials: tuple[str, ...], rounds: int
) -> bool:
    """Whether every answer of `rounds` over both hosts and credentials is the limits store's:
    200, or 429 once the organization's rate is spent by the polling itself."""
    return all(
        host.post(organization, credential).status_code in (200, 429)
        for _ in range(rounds)
        for host in hosts
        for credential in credentials
    )


def _recovered(hosts: tuple[Host, Host], organization: str, credentials: tuple[str, ...]) -> bool:
    return all(
        _all_counted(hosts, organization, credentials, rounds=4) and _readiness(hosts) == [(200, "ok")] * 2
        for _ in range(3)
    )


def _until(check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not recovered in {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_the_shared_database_stopped_mid_run(hosts: tuple[Host, Host], postgres: Postgres) -> None:
    """Bearer callers (decided by their token while the access store is down) see the limits
    store's behaviour: admitted on A (open), 503 limits_unavailable on B (closed); API-key
    callers get 503 access_store_unavailable on both. No 500, no hang; both recover alone.
    Fewer requests than the organization's rate until the store is back, so every refusal until
    then is the outage's; after it the polling may spend the rate (429 is the store answering)."""
    organization, _, key = _new_org(hosts[0])
    bearer = _bearer(organization)
    before = _poll(hosts, organization, bearer, 3)
    postgres.down()
    try:
        outage_started = time.monotonic()
        bearer_down = _poll(hosts, organization, bearer, 10)
        key_down = _poll(hosts, organization, key, 3)
        ready_down = _readiness(hosts)
        outage_secs = time.monotonic() - outage_started
    finally:
        postgres.up()
    # Every worker of both hosts must have its connections back (each reconnects on its own
    # schedule, and which worker answers is the kernel's choice): several rounds with no 503 and
    # every readiness answer ok.
    recovered = _until(lambda: _recovered(hosts, organization, (bearer, key)), 30)
    after = _poll(hosts, organization, key, 3)
    TABLE.extend(
        [
            f"store up, bearer: {_counts(before)}",
            f"store down, bearer ({outage_secs:.1f} s for this and the next row): {_counts(bearer_down)}",
            f"store down, API key: {_counts(key_down)}; /readyz A, B: {ready_down}",
            f"store back: 3 × 4 rounds without a 503, readiness ok, {recovered:.1f} s after `postgres up`",
            f"store back, API key: {_counts(after)}",
        ]
    )
    print("\n".join(TABLE[-5:]))
    assert before == {"a": Counter({"200": 3}), "b": Counter({"200": 3})}
    assert set(after["a"]) | set(after["b"]) <= {"200", "429 too_many_requests"}
    assert bearer_down == {"a": Counter({"200": 10}), "b": Counter({"503 limits_unavailable": 10})}
    assert key_down == {
        "a": Counter({"503 access_store_unavailable": 3}),
        "b": Counter({"503 access_store_unavailable": 3}),
    }
    assert ready_down == [(200, "unavailable"), (503, "not_ready")]
    assert _readiness(hosts) == [(200, "ok"), (200, "ok")]


def _counts(seen: dict[str, Counter[str]]) -> str:
    return "; ".join(f"{name.upper()} {dict(counts)}" for name, counts in seen.items())
