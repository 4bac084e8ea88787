"""The cache around a backend call: hit, miss, 304, a new data version, revalidation by the
engine's own tags, single-flight, isolation."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.backends.base import Scope
from proxy.cache.entry import Validator
from proxy.cache.flight import SingleFlight
from proxy.cache.freshness import Freshness
from proxy.cache.results import Cached, Check, ResultCache, VersionOnly
from proxy.cache.store import DiskStore
from proxy.query.plan import ResultPlan, plan_result
from proxy.runtime.metrics import CACHE_SHARED
from schemas.request import QuerySchema
from tests.support.ids import ORG, OTHER_ORG, UNKNOWN_ORG

ORGS = (ORG, OTHER_ORG, UNKNOWN_ORG)
GRANULARITIES = ("all", "day", "hour")


class Versions:
    """A data version the test moves by hand."""

    def __init__(self) -> None:
        self.current = "v1"

    def version(self, plan: ResultPlan, scope: Scope) -> str:
        return self.current


def _plan(granularity: str = "day", days: int = 2) -> ResultPlan:
    request = {
        "interval": {"start": "2019-03-01T00:00:00Z", "end": f"2019-03-{1 + days:02d}T00:00:00Z"},
        "granularity": granularity,
        "aggregations": [{"type": "count"}],
    }
    return plan_result(QuerySchema().load(request), max_buckets=10_000, max_rows=100)


def _cache(root: Path, versions: Versions | None = None) -> ResultCache:
    return ResultCache(
        DiskStore(root / "results", 8 * 1024 * 1024),
        SingleFlight(root / "flights"),
        VersionOnly(versions or Versions()),
        Freshness(10.0),
    )


def _scope(organization: str = ORG) -> Scope:
    return Scope.starting_now(organization, "request", 10.0)


class Backend:
    """Counts its queries; each answer names the organization and plan it was computed for."""

    def __init__(self, delay_secs: float = 0.0) -> None:
        self.queries = 0
        self.delay_secs = delay_secs
        self._lock = threading.Lock()

    def compute(self, organization: str, plan: ResultPlan) -> Callable[[], bytes]:
        def run() -> bytes:
            with self._lock:
                self.queries += 1
            time.sleep(self.delay_secs)
            return f"{organization}|{plan.query.granularity}|{len(plan.bucket_starts_ms)}".encode()

        return run


def _ask(
    cache: ResultCache, backend: Backend, organization: str, plan: ResultPlan, tag: str | None = None
) -> Cached:
    return cache.answer(plan, _scope(organization), tag, backend.compute(organization, plan))


def test_second_request_is_a_hit_and_its_etag_a_304(tmp_path: Path) -> None:
    cache, backend = _cache(tmp_path), Backend()
    first = _ask(cache, backend, ORG, _plan())
    second = _ask(cache, backend, ORG, _plan())
    conditional = _ask(cache, backend, ORG, _plan(), first.etag)
    assert (first.outcome, second.outcome, conditional.outcome) == ("miss", "hit", "revalidated")
    assert second.body == first.body and conditional.body is None and conditional.etag == first.etag
    assert backend.queries == 1


def test_a_new_data_version_is_a_miss_with_a_new_etag(tmp_path: Path) -> None:
    versions = Versions()
    cache, backend = _cache(tmp_path, versions), Backend()
    before = _ask(cache, backend, ORG, _plan())
    versions.current = "v2"
    after = _ask(cache, backend, ORG, _plan(), before.etag)
    assert (after.outcome, after.etag != before.etag, backend.queries) == ("miss", True, 2)


def test_recent_intervals_are_not_cached_when_the_window_is_zero(tmp_path: Path) -> None:
    cache = ResultCache(
        DiskStore(tmp_path / "results", 1024 * 1024),
        SingleFlight(tmp_path / "flights"),
        VersionOnly(Versions()),
        Freshness(0.0),
    )
    backend = Backend()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    interval = {
        "start": (today - timedelta(days=1)).isoformat(),
        "end": (today + timedelta(days=1)).isoformat(),
    }
    request = {"interval": interval, "granularity": "all"}
    plan = plan_result(QuerySchema().load({**request, "aggregations": [{"type": "count"}]}), 10, 100)
    outcomes = [_ask(cache, backend, ORG, plan).outcome for _ in range(2)]
    assert (outcomes, backend.queries) == (["uncached", "uncached"], 2)


def test_twenty_identical_concurrent_requests_run_one_query(tmp_path: Path) -> None:
    cache, backend = _cache(tmp_path), Backend(delay_secs=0.3)
    shared_before = CACHE_SHARED._value.get()
    answers: list[Cached] = []
    threads = [
        threading.Thread(target=lambda: answers.append(_ask(cache, backend, ORG, _plan()))) for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.queries == 1
    assert sorted(answer.outcome for answer in answers) == ["hit"] * 19 + ["miss"]
    assert CACHE_SHARED._value.get() - shared_before == 19


def _worker(root: Path, counter: Path, start: Any) -> None:
    start.wait()

    def compute() -> bytes:
        with counter.open("a") as handle:
            handle.write("q\n")
        time.sleep(0.3)
        return b"answer"

    _cache(root).answer(_plan(), _scope(), None, compute)


def test_identical_requests_in_several_processes_run_one_query(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    start = context.Barrier(6)
    counter = tmp_path / "queries"
    workers = [context.Process(target=_worker, args=(tmp_path, counter, start)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0] * 6
    assert counter.read_text().splitlines() == ["q"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(
        st.tuples(st.sampled_from(ORGS), st.sampled_from(GRANULARITIES), st.integers(1, 3), st.booleans()),
        min_size=1,
        max_size=25,
    )
)
def test_no_answer_or_304_crosses_organizations(
    tmp_path_factory: pytest.TempPathFactory, requests: Any
) -> None:
    cache, backend = _cache(tmp_path_factory.mktemp("isolation")), Backend()
    tags: dict[str, str] = {}  # ETag → the organization it was given to
    for organization, granularity, days, conditional in requests:
        plan = _plan(granularity, days)
        # A conditional request carries every ETag any organization has seen: the hostile case.
        offered = ", ".join(tags) if conditional and tags else None
        answer = _ask(cache, backend, organization, plan, offered)
        assert answer.etag is not None
        assert tags.setdefault(answer.etag, organization) == organization
        if answer.body is not None:
            assert answer.body.split(b"|")[0].decode() == organization


class Tagged:
    """An engine that tags each answer (as Druid's ETag does): the tag moves by hand; every check
    and every tag handed out is counted."""

    def __init__(self) -> None:
        self.tag: str | None = "t1"
        self.checks: list[tuple[Validator, ...]] = []

    def version(self, plan: ResultPlan, scope: Scope) -> str:
        return "tagged"

    def check(self, validators: tuple[Validator, ...], scope: Scope) -> Check:
        self.checks.append(validators)
        current = all(tag == self.tag for _, tag in validators)
        return Check(current, None if current else f"fresh under {self.tag}")

    def recording(self, fresh: object, scope: Scope) -> Any:
        return _Recorder(self, fresh)


class _Recorder:
    def __init__(self, engine: Tagged, fresh: object) -> None:
        self.engine, self.fresh = engine, fresh

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def validators(self) -> tuple[Validator, ...] | None:
        return None if self.engine.tag is None else (("the native query", self.engine.tag),)


def _tagged(root: Path, engine: Tagged) -> ResultCache:
    return ResultCache(
        DiskStore(root / "results", 1024 * 1024), SingleFlight(root / "flights"), engine, Freshness(10.0)
    )


def test_a_stored_answer_is_served_only_after_the_engine_says_it_is_current(tmp_path: Path) -> None:
    engine, backend = Tagged(), Backend()
    cache = _tagged(tmp_path, engine)
    first = _ask(cache, backend, ORG, _plan())
    second = _ask(cache, backend, ORG, _plan())
    assert (first.outcome, second.outcome, backend.queries) == ("miss", "hit", 1)
    assert engine.checks == [(("the native query", "t1"),)]
    engine.tag = "t2"
    third = _ask(cache, backend, ORG, _plan(), first.etag)
    assert (third.outcome, backend.queries, third.etag != first.etag) == ("miss", 2, True)
    assert third.body == first.body  # the answer is the same, its tag is not: a new ETag all the same


def test_a_failed_check_hands_its_fresh_answer_to_the_computation(tmp_path: Path) -> None:
    engine, backend = Tagged(), Backend()
    cache = _tagged(tmp_path, engine)
    _ask(cache, backend, ORG, _plan())
    engine.tag = "t2"
    handed: list[object] = []
    original = engine.recording

    def recording(fresh: object, scope: Scope) -> Any:
        handed.append(fresh)
        return original(fresh, scope)

    engine.recording = recording  # type: ignore[method-assign]
    _ask(cache, backend, ORG, _plan())
    assert handed == ["fresh under t2"]


def test_an_answer_without_a_tag_is_not_kept(tmp_path: Path) -> None:
    engine, backend = Tagged(), Backend()
    engine.tag = None
    cache = _tagged(tmp_path, engine)
    outcomes = [_ask(cache, backend, ORG, _plan()) for _ in range(2)]
    assert [(a.outcome, a.etag) for a in outcomes] == [("uncached", None)] * 2
    assert backend.queries == 2


def test_a_304_needs_the_engine_to_say_the_answer_is_current(tmp_path: Path) -> None:
    engine, backend = Tagged(), Backend()
    cache = _tagged(tmp_path, engine)
    first = _ask(cache, backend, ORG, _plan())
    assert _ask(cache, backend, ORG, _plan(), first.etag).outcome == "revalidated"
    engine.tag = "t2"
    changed = _ask(cache, backend, ORG, _plan(), first.etag)
    assert (changed.outcome, changed.body is not None, len(engine.checks)) == ("miss", True, 2)


def test_a_caller_holding_the_fresh_answer_gets_a_304_even_after_an_eviction(tmp_path: Path) -> None:
    cache, backend = _cache(tmp_path), Backend()
    first = _ask(cache, backend, ORG, _plan())
    evicted = _cache(tmp_path / "other")  # the same answer computed where nothing is stored
    again = _ask(evicted, backend, ORG, _plan(), first.etag)
    assert (again.body, again.etag, again.outcome, backend.queries) == (None, first.etag, "miss", 2)


def test_concurrent_requests_for_a_tagged_answer_run_one_query_and_check_what_they_take(
    tmp_path: Path,
) -> None:
    engine, backend = Tagged(), Backend(delay_secs=0.3)
    cache = _tagged(tmp_path, engine)
    answers: list[Cached] = []
    threads = [
        threading.Thread(target=lambda: answers.append(_ask(cache, backend, ORG, _plan()))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.queries == 1
    assert sorted(answer.outcome for answer in answers) == ["hit"] * 7 + ["miss"]
    # Those that waited checked the answer the first one stored: it may predate their arrival.
    assert len(engine.checks) == 7
