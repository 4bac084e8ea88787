"""The result cache's store shared through PostgreSQL, against a real database of its own on the
local server (`reporting-proxy postgres up`, which `make test` runs): answers by key across
store instances that stand for hosts, expiry, the byte bound with least-recently-used eviction,
and a database that is down (a miss, never an error)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from proxy.cache.shared_store import PostgresStore
from proxy.settings import SettingsError, load_settings
from tests.support.net import free_port
from tests.support.postgres import fresh_database

MakeStore = Callable[[int], PostgresStore]


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_database("cache") as url:
        yield url


@pytest.fixture
def store(database: str) -> Iterator[MakeStore]:
    """Stores bounded at the given bytes on one emptied database, each with its own pool."""
    made: list[PostgresStore] = []

    def make(max_bytes: int) -> PostgresStore:
        made.append(PostgresStore(database, max_bytes))
        return made[-1]

    make(1).volume()  # its first connection creates the tables
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute("TRUNCATE proxy_result_cache")
        connection.execute("UPDATE proxy_result_cache_volume SET total = 0")
    yield make
    for made_store in made:
        made_store.close()


def test_an_answer_put_through_one_host_is_read_through_another(store: MakeStore) -> None:
    a, b = store(10_000), store(10_000)
    assert a.put("k", b"answer", None) == 0
    assert (b.get("k"), b.get("other"), b.volume()) == (b"answer", None, 6)


def test_a_replaced_answer_counts_once(store: MakeStore) -> None:
    one = store(10_000)
    one.put("k", b"x" * 100, None)
    one.put("k", b"y" * 30, None)
    assert (one.get("k"), one.volume()) == (b"y" * 30, 30)


def test_an_answer_expires(store: MakeStore) -> None:
    one = store(10_000)
    one.put("short", b"a", 0.2)
    one.put("kept", b"b", None)
    assert one.get("short") == b"a"
    time.sleep(0.3)
    assert (one.get("short"), one.get("kept")) == (None, b"b")
    one.put("next", b"c", None)  # a write drops what expired
    assert one.volume() == 2


def test_the_least_recently_used_answers_go_to_stay_within_the_bytes(store: MakeStore) -> None:
    a, b = store(1_000), store(1_000)
    a.put("first", b"1" * 400, None)
    a.put("second", b"2" * 400, None)
    assert b.get("first") == b"1" * 400  # used through the other host: now the newest
    assert b.put("third", b"3" * 400, None) == 1
    assert [a.get(key) is not None for key in ("first", "second", "third")] == [True, False, True]
    assert a.volume() == 800


def test_an_answer_larger_than_the_bound_is_not_kept(store: MakeStore) -> None:
    one = store(100)
    one.put("small", b"s" * 10, None)
    assert one.put("huge", b"h" * 101, None) == 0
    assert (one.get("huge"), one.get("small"), one.volume()) == (None, b"s" * 10, 10)


def test_a_database_that_is_down_is_a_miss(caplog: pytest.LogCaptureFixture) -> None:
    down = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/none", 1_000, timeout_secs=0.3)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="proxy.cache.shared_store"):
        outcomes = (down.get("k"), down.put("k", b"v", None), down.volume(), down.get("k"))
    elapsed = time.monotonic() - started
    down.close()
    assert outcomes == (None, 0, 0, None)
    assert len([r for r in caplog.records if r.name == "proxy.cache.shared_store"]) == 1  # once a minute
    # The first call waits the pool's timeout; the next ones, in the pause after it, not at all.
    assert elapsed < 0.3 + 0.5, elapsed


def test_a_cache_database_url_must_be_postgresql() -> None:
    with pytest.raises(SettingsError, match="PROXY_CACHE_DATABASE_URL"):
        load_settings({"PROXY_CACHE_DATABASE_URL": "redis://localhost"})
