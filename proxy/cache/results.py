"""The lookup around a backend call: a conditional answer, a stored one, or one query for many callers."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from proxy.backends.base import Scope
from proxy.cache.entry import Entry, Validator, decode, encode
from proxy.cache.flight import Held, SingleFlight
from proxy.cache.freshness import Freshness
from proxy.cache.key import cache_key, canonical_query, entity_tag, matches
from proxy.cache.store import ResultStore
from proxy.errors import ProxyError
from proxy.query.plan import ResultPlan
from proxy.runtime.metrics import observe_cache, observe_cache_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """What revalidating a stored answer found: still current, or not, with what the changed
    request answered (`fresh`, the engine's own), so the new computation does not ask it again."""

    current: bool
    fresh: object = None


class Recording(Protocol):
    """The validators of the answer computed while it was open."""

    def validators(self) -> tuple[Validator, ...] | None:
        """None when an answer carried no tag: the result cannot be revalidated, so it is not kept."""


class DataVersions(Protocol):
    """How an engine tells an answer is still current."""

    def version(self, plan: ResultPlan, scope: Scope) -> str:
        """What is known of the data before any query runs; part of the key."""

    def check(self, validators: tuple[Validator, ...], scope: Scope) -> Check:
        """Whether an answer stored with these validators is still current (asks the backend)."""

    def recording(self, fresh: object, scope: Scope) -> AbstractContextManager[Recording]:
        """Collects the validators of the answer computed inside it for the scope's request;
        `fresh` is what a failed check fetched."""


class _NoValidators:
    def validators(self) -> tuple[Validator, ...]:
        return ()


class VersionOnly:
    """An engine whose version, read before the query, says everything (the embedded one): an
    answer stored under its key is current, and needs no validators."""

    def __init__(self, versions: VersionReader) -> None:
        self.versions = versions

    def version(self, plan: ResultPlan, scope: Scope) -> str:
        return self.versions.version(plan, scope)

    def check(self, validators: tuple[Validator, ...], scope: Scope) -> Check:
        return Check(current=True)

    def recording(self, fresh: object, scope: Scope) -> AbstractContextManager[Recording]:
        return nullcontext(_NoValidators())


class VersionReader(Protocol):
    """An engine's data version, read before the query."""

    def version(self, plan: ResultPlan, scope: Scope) -> str:
        """A new value whenever the data under the plan changed."""


class WriteBehind:
    """Stores answers after the request has its answer, on one thread per process, in order."""

    def __init__(self) -> None:
        self._threads: dict[int, ThreadPoolExecutor] = {}

    def submit(self, job: Callable[[], None]) -> None:
        # By process id: threads do not survive a fork.
        pid = os.getpid()
        pool = self._threads.get(pid)
        if pool is None:
            pool = self._threads.setdefault(pid, ThreadPoolExecutor(1, thread_name_prefix="cache-writer"))
        try:
            pool.submit(job)
        except RuntimeError:
            job()  # the interpreter is shutting down: store (and release the key's lock) here


@dataclass(frozen=True)
class _Asked:
    """One request's lookup: its key (organization, canonical query, version), plan, scope, time."""

    key: str
    plan: ResultPlan
    scope: Scope
    now: float


@dataclass(frozen=True)
class Cached:
    """An answer as the cache gives it: the body (None: the caller's copy is current, 304),
    its ETag (None: not cacheable) and what the cache did (`X-Cache`)."""

    body: bytes | None
    etag: str | None
    outcome: str


class ResultCache:
    """Answers by organization, canonical query and data version, shared through `store`."""

    def __init__(
        self, store: ResultStore, flight: SingleFlight, versions: DataVersions, freshness: Freshness
    ) -> None:
        self.store = store
        self.flight = flight
        self.versions = versions
        self.freshness = freshness
        self.writer = WriteBehind()

    def answer(
        self, plan: ResultPlan, scope: Scope, if_none_match: str | None, compute: Callable[[], bytes]
    ) -> Cached:
        """The encoded answer of `plan` for the scope's organization; `compute` runs the backend.

        The caller has authenticated and authorized the organization before this runs. A stored
        answer is served only once the engine has said, during this request, that it is current.
        """
        now = time.time()
        window = self.freshness.window(plan, now)
        if window is None:
            return self._uncached(compute)
        try:
            version = f"{self.versions.version(plan, scope)}|{window}"
        except ProxyError:
            # No version, no cache: the query still runs, and fails by itself if the engine is down.
            log.warning("data version unavailable in request %s; answering uncached", scope.request_id)
            return self._uncached(compute)
        asked = _Asked(cache_key(scope.organization_id, canonical_query(plan), version), plan, scope, now)
        entry = decode(self.store.get(asked.key))
        fresh = None
        if entry is not None:
            check = self._check(entry, scope)
            if check.current:
                return self._serve(entry, if_none_match, "hit")
            fresh = check.fresh
        return self._lead(asked, entry, fresh, if_none_match, compute)

    def _lead(
        self,
        asked: _Asked,
        entry: Entry | None,
        fresh: object,
        if_none_match: str | None,
        compute: Callable[[], bytes],
    ) -> Cached:
        held = self.flight.acquire(asked.key, asked.scope.deadline)
        try:
            # Whoever held the lock before may have stored a newer answer; it is checked like any.
            stored = decode(self.store.get(asked.key)) if held.waited else None
            if stored is not None and stored != entry:
                check = self._check(stored, asked.scope)
                if check.current:
                    held.release()
                    return self._serve(stored, if_none_match, "hit", shared=True)
                fresh = check.fresh
            with self.versions.recording(fresh, asked.scope) as recording:
                body = compute()
        except BaseException:
            held.release()
            raise
        validators = recording.validators()
        if validators is None:
            held.release()
            return self._computed(Cached(body, None, "uncached"), if_none_match)
        # The key already names the organization, the query and the version; the engine's tags
        # complete what the caller's ETag stands for.
        tag = entity_tag(cache_key(asked.key, b"", "|".join(tag for _, tag in validators)))
        lifetime = self.freshness.lifetime_secs(asked.plan, asked.now)
        self.writer.submit(partial(self._store, held, asked.key, Entry(tag, validators, body), lifetime))
        return self._computed(Cached(body, tag, "miss"), if_none_match)

    def _store(self, held: Held, key: str, entry: Entry, lifetime_secs: float | None) -> None:
        # The lock is released only once the answer is stored: identical requests wait for it
        # rather than run the query again.
        try:
            evicted = self.store.put(key, encode(entry), lifetime_secs)
            observe_cache_store(evicted, self.store.volume())
        except Exception:
            log.exception("result cache write failed; the answer is not kept")
        finally:
            held.release()

    def _check(self, entry: Entry, scope: Scope) -> Check:
        return self.versions.check(entry.validators, scope) if entry.validators else Check(current=True)

    @staticmethod
    def _serve(entry: Entry, if_none_match: str | None, outcome: str, shared: bool = False) -> Cached:
        if matches(if_none_match, entry.tag):
            observe_cache("revalidated")
            return Cached(None, entry.tag, "revalidated")
        observe_cache(outcome, shared=shared)
        return Cached(entry.body, entry.tag, outcome)

    @staticmethod
    def _computed(cached: Cached, if_none_match: str | None) -> Cached:
        observe_cache(cached.outcome)
        # The caller already holds this very answer (its copy was evicted here, or is older than
        # the store): no body, as for any current copy.
        if cached.etag is not None and matches(if_none_match, cached.etag):
            return Cached(None, cached.etag, cached.outcome)
        return cached

    @staticmethod
    def _uncached(compute: Callable[[], bytes]) -> Cached:
        body = compute()
        observe_cache("uncached")
        return Cached(body, None, "uncached")
