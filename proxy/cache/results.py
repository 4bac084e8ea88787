"""The lookup around a backend call: a conditional answer, a stored one, or one query for many callers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from proxy.backends.base import Scope
from proxy.cache.flight import SingleFlight
from proxy.cache.freshness import Freshness
from proxy.cache.key import cache_key, canonical_query, entity_tag, matches
from proxy.cache.store import ResultStore
from proxy.errors import ProxyError
from proxy.query.plan import ResultPlan
from proxy.runtime.metrics import observe_cache, observe_cache_store

log = logging.getLogger(__name__)


class DataVersions(Protocol):
    """What an engine says about the data under a plan: a new value whenever that data changed."""

    def version(self, plan: ResultPlan, scope: Scope) -> str:
        """The version of the data the plan would read, read before the query runs."""


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

    def answer(
        self, plan: ResultPlan, scope: Scope, if_none_match: str | None, compute: Callable[[], bytes]
    ) -> Cached:
        """The encoded answer of `plan` for the scope's organization; `compute` runs the backend.

        The caller has authenticated and authorized the organization before this runs.
        """
        now = time.time()
        window = self.freshness.window(plan, now)
        if window is None:
            return self._uncached(compute)
        try:
            # Read before the query: the answer stored under it is at least as new as this version.
            version = f"{self.versions.version(plan, scope)}|{window}"
        except ProxyError:
            # No version, no cache: the query still runs, and fails by itself if the engine is down.
            log.warning("data version unavailable in request %s; answering uncached", scope.request_id)
            return self._uncached(compute)
        key = cache_key(scope.organization_id, canonical_query(plan), version)
        tag = entity_tag(key)
        if matches(if_none_match, tag):
            observe_cache("revalidated")
            return Cached(None, tag, "revalidated")
        body = self.store.get(key)
        if body is not None:
            observe_cache("hit")
            return Cached(body, tag, "hit")
        return self._lead(key, tag, plan, scope, now, compute)

    def _lead(
        self, key: str, tag: str, plan: ResultPlan, scope: Scope, now: float, compute: Callable[[], bytes]
    ) -> Cached:
        with self.flight.lead(key, scope.deadline):
            # Whoever held the lock before may have stored this very answer.
            body = self.store.get(key)
            if body is not None:
                observe_cache("hit", shared=True)
                return Cached(body, tag, "hit")
            body = compute()
            evicted = self.store.put(key, body, self.freshness.lifetime_secs(plan, now))
        observe_cache("miss")
        observe_cache_store(evicted, self.store.volume())
        return Cached(body, tag, "miss")

    @staticmethod
    def _uncached(compute: Callable[[], bytes]) -> Cached:
        body = compute()
        observe_cache("uncached")
        return Cached(body, None, "uncached")
