"""The limits shared through PostgreSQL, against a real database of their own on the local server
(`reporting-proxy postgres up`, which `make test` runs): the same rules as the host's table,
counted once across limiters that stand for hosts, leases that expire, and a store that fails."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from proxy.errors import LimitsUnavailable, TooManyRequests
from proxy.runtime import shared_limits
from proxy.runtime.limiters import build_limiter
from proxy.runtime.limits import Limiter, Limits, organization_digest, principal_digest
from proxy.runtime.shared_limits import SharedLimiter
from proxy.runtime.table_limits import TableLimiter
from proxy.settings import LimitsOnError, SettingsError, load_settings
from tests.support.ids import ORG, OTHER_ORG
from tests.support.limits import admit_outcome
from tests.support.net import free_port
from tests.support.postgres import fresh_database
from tests.unit.web import QUERY, make_web, url

MakeLimiter = Callable[[Limits], Limiter]


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_database("limits") as url:
        yield url


@pytest.fixture
def shared(database: str) -> Iterator[Callable[[Limits], SharedLimiter]]:
    """Limiters on one emptied database, each with its own pool: hosts sharing the store."""
    first = SharedLimiter(database, Limits(1, 0, 0, 0))
    first.readiness()  # its first connection creates the tables
    first.close()
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute("TRUNCATE proxy_limit_keys, proxy_limit_leases")
    made: list[SharedLimiter] = []

    def make(limits: Limits) -> SharedLimiter:
        made.append(SharedLimiter(database, limits))
        return made[-1]

    yield make
    for limiter in made:
        limiter.close()


@pytest.fixture(params=["table", "shared"])
def make_limiter(request: pytest.FixtureRequest, tmp_path: Path) -> MakeLimiter:
    """Either store: the rules must come out the same."""
    if request.param == "table":
        return lambda limits: TableLimiter(tmp_path / "limits.shm", limits)
    shared: Callable[[Limits], SharedLimiter] = request.getfixturevalue("shared")
    return shared


def _entered(holder: AbstractContextManager[None]) -> AbstractContextManager[None]:
    holder.__enter__()
    return holder


@pytest.mark.parametrize(
    ("limits", "calls", "expected"),
    [
        # A burst of per_min, then refused for about one interval (the clock is real here).
        (Limits(3, 0, 0, 0), [(ORG, "key:a")] * 4, [0, 0, 0, 20]),
        (Limits(7, 0, 0, 0), [(ORG, "key:a")] * 8, [0] * 7 + [9]),
        (Limits(0, 2, 0, 0), [(ORG, "key:a")] * 3 + [(ORG, "key:b")], [0, 0, 30, 0]),
        (
            Limits(2, 0, 0, 0),
            [(ORG, "key:a"), (ORG, "key:b"), (ORG, "key:c"), (OTHER_ORG, "key:a")],
            [0, 0, 30, 0],
        ),
        (Limits(2, 5, 0, 0), [(ORG, "key:a")] * 3, [0, 0, 30]),
    ],
    ids=["org_burst", "interval_not_whole", "per_principal", "org_across_principals", "org_before_principal"],
)
def test_rates_are_the_same_on_both_stores(
    make_limiter: MakeLimiter, limits: Limits, calls: list[tuple[str, str]], expected: list[int]
) -> None:
    limiter = make_limiter(limits)
    assert [admit_outcome(limiter, *call) for call in calls] == expected


@pytest.mark.parametrize(
    ("limits", "held", "then", "message"),
    [
        (
            Limits(0, 0, 2, 0),
            [(ORG, "key:a"), (ORG, "key:b")],
            (ORG, "key:c"),
            "2 queries of this organization",
        ),
        (Limits(0, 0, 0, 1), [(ORG, "key:a")], (ORG, "key:a"), "1 queries of this credential"),
        (Limits(0, 0, 3, 1), [(ORG, "key:a")], (ORG, "key:a"), "1 queries of this credential"),
    ],
    ids=["per_org", "per_principal", "principal_under_org"],
)
def test_slots_are_the_same_on_both_stores(
    make_limiter: MakeLimiter,
    limits: Limits,
    held: list[tuple[str, str]],
    then: tuple[str, str],
    message: str,
) -> None:
    limiter = make_limiter(limits)
    holders = [_entered(limiter.admit(*key)) for key in held]
    with pytest.raises(TooManyRequests, match=message) as refused:
        _entered(limiter.admit(*then))
    assert (refused.value.retry_after, limiter.slots_held(ORG)) == (1, len(held))
    for holder in holders:
        holder.__exit__(None, None, None)
    assert (admit_outcome(limiter, *then), limiter.slots_held(ORG)) == (0, 0)


def test_a_refused_request_charges_no_rate(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(2, 0, 1, 0))
    with limiter.admit(ORG, "key:a"):
        assert admit_outcome(limiter) == 1  # concurrency refused: must not spend the last token
    assert [admit_outcome(limiter), admit_outcome(limiter)] == [0, 30]


def test_invalid_requests_have_a_budget_of_their_own(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(Limits(100, 100, 0, 0, invalid_per_principal_per_min=2))
    limiter.charge(ORG, "key:a")
    limiter.count_invalid(ORG, "key:a")
    limiter.count_invalid(ORG, "key:a")
    with pytest.raises(TooManyRequests, match="More than 2 invalid queries") as refused:
        limiter.charge(ORG, "key:a")
    assert refused.value.retry_after == 30
    limiter.charge(ORG, "key:b")  # another credential's budget is its own


def test_a_rate_is_counted_once_across_hosts(shared: Callable[[Limits], SharedLimiter]) -> None:
    hosts = [shared(Limits(10, 0, 0, 0)) for _ in range(2)]
    outcomes = [admit_outcome(hosts[n % 2]) for n in range(20)]
    assert outcomes.count(0) == 10
    assert outcomes[:10] == [0] * 10


def test_slots_are_counted_once_across_hosts_under_contention(
    shared: Callable[[Limits], SharedLimiter],
) -> None:
    """Sixteen threads on two hosts take and give back slots of one organization at once: the
    database's row locks must keep the running count at or under the limit."""
    hosts = [shared(Limits(0, 0, 3, 0)) for _ in range(2)]
    running, most, admitted, lock = [0], [0], [0], threading.Lock()

    def worker(host: SharedLimiter, principal: str) -> None:
        for _ in range(15):
            try:
                with host.admit(ORG, principal):
                    with lock:
                        running[0] += 1
                        most[0] = max(most[0], running[0])
                        admitted[0] += 1
                    time.sleep(0.002)
                    with lock:
                        running[0] -= 1
            except TooManyRequests:
                pass

    threads = [threading.Thread(target=worker, args=(hosts[n % 2], f"key:{n}")) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"16 threads x 15 tries on 2 hosts, 3 slots: {admitted[0]} admitted, at most {most[0]} at once")
    assert most[0] == 3
    assert hosts[0].slots_held(ORG) == 0


def test_a_lease_that_is_never_given_back_expires(shared: Callable[[Limits], SharedLimiter]) -> None:
    dead_host = shared(Limits(0, 0, 1, 0, stale_slot_secs=0.5))
    leaked = _entered(dead_host.admit(ORG, "key:a"))  # never left: its host died holding the slot
    survivor = shared(Limits(0, 0, 1, 0, stale_slot_secs=0.5))
    assert admit_outcome(survivor) == 1
    time.sleep(0.6)
    assert admit_outcome(survivor) == 0
    assert leaked is not None  # held until here: a collected generator would give the slot back


def _samples(name: str, operation: str) -> float:
    return REGISTRY.get_sample_value(name, {"operation": operation}) or 0.0


@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_a_store_that_is_down_admits_or_refuses_without_waiting(
    on_error: LimitsOnError, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    down = SharedLimiter(url, Limits(1, 0, 1, 0), on_error)
    errors = _samples("reporting_proxy_limits_store_errors_total", "admit")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="proxy.runtime.shared_limits"):
        outcomes = []
        for _ in range(3):
            try:
                outcomes.append(admit_outcome(down))
            except LimitsUnavailable as exc:
                outcomes.append(exc.status)
    elapsed = time.monotonic() - started
    down.close()
    assert outcomes == ([0, 0, 0] if on_error == "open" else [503, 503, 503])
    down.count_invalid(ORG, "key:a")  # a 400 already decided is never turned into a 503
    assert _samples("reporting_proxy_limits_store_errors_total", "admit") == errors + 3
    assert len([r for r in caplog.records if "limits store unavailable" in r.getMessage()]) == 1
    assert down.readiness() == "unavailable"
    # The first call waits the pool's timeout (0.3 s), never libpq's connect timeout; the next
    # ones, within a second of its failure, are not tried at all.
    assert elapsed < 0.3 + 0.5, elapsed


@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_a_store_that_hangs_is_cut_at_the_timeout(
    shared: Callable[[Limits], SharedLimiter], database: str, on_error: LimitsOnError
) -> None:
    """Another session holds the organization's row: the admission waits for its lock only as
    long as the timeout (lock_timeout), then fails open or closed."""
    limiter = SharedLimiter(database, Limits(10, 0, 0, 0), on_error)
    assert admit_outcome(limiter) == 0  # the key's row exists, the pool is warm
    with psycopg.connect(database) as blocker:  # a transaction that keeps its row lock
        blocker.execute("SELECT 1 FROM proxy_limit_keys FOR UPDATE")
        started = time.monotonic()
        try:
            outcome = admit_outcome(limiter)
        except LimitsUnavailable as exc:
            outcome = exc.status
        elapsed = time.monotonic() - started
    limiter.close()
    assert outcome == (0 if on_error == "open" else 503)
    assert 0.3 <= elapsed < 0.3 + 0.5, elapsed


def test_the_settings_choose_the_store(database: str, tmp_path: Path) -> None:
    table = build_limiter(load_settings({}, data_dir=tmp_path))
    shared = build_limiter(load_settings({"PROXY_LIMITS_DATABASE_URL": database}, data_dir=tmp_path))
    assert (type(table), table.readiness()) == (TableLimiter, "local")
    assert isinstance(shared, SharedLimiter)
    assert shared.readiness() == "ok"
    shared.close()


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("PROXY_LIMITS_DATABASE_URL", "mysql://x/y"),
        ("PROXY_LIMITS_ON_STORE_ERROR", "maybe"),
        ("PROXY_LIMITS_STORE_TIMEOUT_SECS", "0"),
    ],
)
def test_bad_limits_store_settings_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: raw})


def test_the_service_refuses_over_the_shared_rate_with_retry_after(
    shared: Callable[[Limits], SharedLimiter], database: str, tmp_path: Path
) -> None:
    # `shared` empties the tables.
    web = make_web(tmp_path, limits_database_url=database, rate_limit_per_org_per_min=2)
    statuses = [web.client.post(url(), json=QUERY, headers=web.auth("a")).status_code for _ in range(2)]
    refused = web.client.post(url(), json=QUERY, headers=web.auth("b"))
    _close(web.service.limiter)
    assert statuses == [200, 200]
    assert (refused.status_code, refused.json, refused.headers["Retry-After"]) == (
        429,
        {"detail": "More than 2 queries a minute for this organization.", "code": "too_many_requests"},
        "30",
    )


@pytest.mark.parametrize(
    ("on_error", "query", "ready"),
    [
        (
            "open",
            (200, None),
            (200, {"status": "ready", "backend": "stub", "limits": "unavailable", "access": "ok"}),
        ),
        (
            "closed",
            (503, {"detail": "The rate limits cannot be checked now.", "code": "limits_unavailable"}),
            (503, {"detail": "The shared limits store does not answer.", "code": "not_ready"}),
        ),
    ],
)
def test_the_service_while_the_limits_store_is_down(
    tmp_path: Path, on_error: str, query: tuple[int, object], ready: tuple[int, object]
) -> None:
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    web = make_web(tmp_path, limits_database_url=down, limits_on_store_error=on_error)
    answers = [web.client.post(url(), json=QUERY, headers=web.auth("a")) for _ in range(3)]
    readiness = web.client.get("/readyz")
    _close(web.service.limiter)
    assert [(a.status_code, a.json if a.status_code != 200 else None) for a in answers] == [query] * 3
    assert {a.headers.get("Retry-After") for a in answers} == ({None} if on_error == "open" else {"2"})
    assert (readiness.status_code, readiness.json) == ready


def _close(limiter: Limiter) -> None:
    assert isinstance(limiter, SharedLimiter)  # the settings chose the shared store
    limiter.close()


def test_keys_idle_over_a_minute_without_a_lease_are_purged(
    shared: Callable[[Limits], SharedLimiter], database: str
) -> None:
    limiter = shared(Limits(600, 0, 2, 0))
    with limiter.admit(ORG, "key:busy"):
        admit_outcome(limiter, OTHER_ORG)
        with psycopg.connect(database, autocommit=True) as connection:
            # Both organizations' keys as if last used two minutes ago; one still holds a lease.
            connection.execute("UPDATE proxy_limit_keys SET tat = clock_timestamp() - interval '2 minutes'")
            connection.execute(
                "INSERT INTO proxy_limit_keys (key, tat) VALUES ('\\x01', clock_timestamp() + interval '1 second')"
            )
            limiter.purge_idle_keys()
            left = {bytes(row[0]) for row in connection.execute("SELECT key FROM proxy_limit_keys")}
    assert left == {organization_digest(ORG), principal_digest(ORG, "key:busy"), b"\x01"}
    assert admit_outcome(limiter, OTHER_ORG) == 0  # a purged key is met as new


def _rows(connection: psycopg.Connection[Any], sql: str) -> set[bytes]:
    return {bytes(row[0]) for row in connection.execute(sql)}


def test_expired_leases_and_their_keys_are_purged(
    shared: Callable[[Limits], SharedLimiter], database: str
) -> None:
    """A host died holding a slot of OTHER_ORG, whose key no admission meets again: the purge
    deletes the expired lease and then the key; ORG's running query keeps both of its own."""
    limiter = shared(Limits(0, 0, 2, 0))
    with limiter.admit(ORG, "key:a"):
        leaked = _entered(limiter.admit(OTHER_ORG, "key:b"))
        with psycopg.connect(database, autocommit=True) as connection:
            connection.execute(
                "UPDATE proxy_limit_leases SET expires = clock_timestamp() - interval '1 second'"
                " WHERE key = ANY(%s)",
                ([organization_digest(OTHER_ORG), principal_digest(OTHER_ORG, "key:b")],),
            )
            limiter.purge_idle_keys()
            leases = _rows(connection, "SELECT key FROM proxy_limit_leases")
            keys = _rows(connection, "SELECT key FROM proxy_limit_keys")
    assert leases == keys == {organization_digest(ORG), principal_digest(ORG, "key:a")}
    assert leaked is not None  # held until here: a collected generator would give the slot back


@pytest.fixture
def leases_locked(database: str) -> Iterator[psycopg.Connection[Any]]:
    """Another session holds the leases table (as a long VACUUM FULL would): a purge waits on it,
    while an admission that counts no slot never touches it."""
    with psycopg.connect(database) as blocker:
        blocker.execute("LOCK TABLE proxy_limit_leases IN ACCESS EXCLUSIVE MODE")
        yield blocker


@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_a_purge_that_fails_leaves_the_admissions_alone(
    shared: Callable[[Limits], SharedLimiter],
    database: str,
    leases_locked: psycopg.Connection[Any],
    on_error: LimitsOnError,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The purge times out; the admission right after is still counted, neither admitted
    unlimited nor refused with 503 as after a failure of the store."""
    monkeypatch.setattr(shared_limits, "_PURGE_TIMEOUT_SECS", 0.05)
    limiter = SharedLimiter(database, Limits(1, 0, 0, 0), on_error)  # `shared` emptied the tables
    errors = _samples("reporting_proxy_limits_store_errors_total", "admit")
    assert admit_outcome(limiter) == 0
    with caplog.at_level(logging.WARNING, logger="proxy.runtime.shared_limits"):
        limiter.purge_idle_keys()
    outcome = admit_outcome(limiter)
    limiter.close()
    assert outcome == 60
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["limits purge failed"]
    assert "QueryCanceled" in caplog.records[0].getMessage()
    assert _samples("reporting_proxy_limits_store_errors_total", "admit") == errors


def test_a_due_purge_runs_on_a_thread_of_its_own(
    shared: Callable[[Limits], SharedLimiter],
    database: str,
    leases_locked: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A purge is due at every admission here, and the one started waits on the leases table: the
    admissions neither wait for it nor start a second one, and it ends its work once let through."""
    monkeypatch.setattr(shared_limits, "_PURGE_EVERY_SECS", 0.0)
    limiter = shared(Limits(1, 0, 0, 0))
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO proxy_limit_keys VALUES ('\\x01', clock_timestamp() - interval '2 minutes')"
        )
        outcomes = [admit_outcome(limiter), admit_outcome(limiter)]
        purges = [thread for thread in threading.enumerate() if thread.name == "limits-purge"]
        leases_locked.commit()
        limiter.close()  # after the purge under way
        keys = _rows(connection, "SELECT key FROM proxy_limit_keys")
    assert (outcomes, len(purges)) == ([0, 60], 1)
    assert keys == {organization_digest(ORG)}


def test_an_admission_meets_its_key_row_deleted_under_it(
    shared: Callable[[Limits], SharedLimiter], database: str
) -> None:
    """The purge holds the organization's row and deletes it while an admission waits for it: the
    admission inserts the row again, counts on it, and the next one is refused."""
    shared(Limits(1, 0, 0, 0))  # empties the tables
    limiter = SharedLimiter(database, Limits(1, 0, 0, 0), timeout_secs=5.0)  # waits out the purge
    key = organization_digest(ORG)
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute("INSERT INTO proxy_limit_keys (key) VALUES (%s)", (key,))
        with psycopg.connect(database) as purge:
            purge.execute("SELECT 1 FROM proxy_limit_keys WHERE key = %s FOR UPDATE", (key,))
            admission = _Outcome(limiter)
            _wait_for_lock_waiters(connection, 1)
            purge.execute("DELETE FROM proxy_limit_keys WHERE key = %s", (key,))
        admission.join()
        refused = admit_outcome(limiter)
    limiter.close()
    assert (admission.outcome, refused) == (0, 60)


class _Outcome(threading.Thread):
    """`admit_outcome` on a thread of its own."""

    def __init__(self, limiter: Limiter) -> None:
        super().__init__()
        self.limiter = limiter
        self.outcome: int | None = None
        self.start()

    def run(self) -> None:
        self.outcome = admit_outcome(self.limiter)


def _wait_for_lock_waiters(connection: psycopg.Connection[Any], count: int) -> None:
    """Until `count` sessions of this database wait for a lock (another session's)."""
    deadline = time.monotonic() + 5.0
    waiting = """SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'"""
    while connection.execute(waiting).fetchone() != (count,):
        assert time.monotonic() < deadline, f"no {count} sessions waiting for a lock"
        time.sleep(0.01)


def test_a_database_of_the_previous_version_gets_this_one_beside_it() -> None:
    """An old host's function stays (it keeps admitting during a rolling upgrade), the new one is
    made on the first connection, and both count on the same rows."""
    previous = f"proxy_limits_admit_v{shared_limits._SCHEMA - 1}"
    with fresh_database("limits") as url:
        with psycopg.connect(url, autocommit=True) as connection:
            shared_limits.create_schema(connection)
            connection.execute(
                f"ALTER FUNCTION proxy_limits_admit_v{shared_limits._SCHEMA} RENAME TO {previous}"
            )
            connection.execute(
                "INSERT INTO proxy_limit_keys VALUES (%s, clock_timestamp() + interval '1 minute')",
                (organization_digest(ORG),),
            )
            limiter = SharedLimiter(url, Limits(1, 0, 0, 0))
            outcome = admit_outcome(limiter)  # the old host spent the organization's minute
            limiter.close()
            functions = connection.execute(
                "SELECT proname FROM pg_proc WHERE proname LIKE 'proxy_limits_admit_v%' ORDER BY proname"
            ).fetchall()
    assert outcome == 60
    assert functions == [(previous,), (f"proxy_limits_admit_v{shared_limits._SCHEMA}",)]
