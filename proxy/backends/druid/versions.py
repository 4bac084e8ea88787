"""Druid's data version: the broker's own ETag of each native query an answer was computed from.

Every native query of a computed answer is sent with `If-None-Match`, so its 200 carries the
ETag the broker derives from the query's cache key and the segments it read (from its own
timeline, the very set the answer came from; docs/druid-behaviour.md). A stored answer is served
again only after each of its queries, sent again with that ETag, came back 304 in this request:
nothing runs on Druid, and any segment the broker now reads for the query changes the tag.
A query whose answer carries no ETag (a segment still served by a real-time task) makes the
answer uncacheable. The queries reach the client from inside the backend, some on other threads
(a report's extra parts), so `DruidClient.query` finds the recording by the query's `queryId`:
the request's own id, or `<id>-<part>` for an extra part of it. Every native query of a request
must carry one of those, or it would not be revalidated.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from proxy.backends.base import Scope
from proxy.cache.entry import Validator
from proxy.cache.results import Check
from proxy.errors import BackendError
from proxy.query.plan import ResultPlan
from proxy.runtime.disconnect import ClientGone

if TYPE_CHECKING:
    from proxy.backends.druid.client import DruidClient

# Sent when no ETag is held: Druid computes and returns its tag only for a conditional request,
# and base64 of a SHA-1 never equals this.
NO_TAG = "-"


@dataclass(frozen=True)
class Answered:
    """A conditional query's outcome: rows, or None when the tag sent is still current (304)."""

    rows: list[Any] | None
    etag: str | None


def canonical_native(native: dict[str, Any]) -> str:
    """A native query without its per-request `queryId`: the same for every request that sends it."""
    context = {name: value for name, value in native.get("context", {}).items() if name != "queryId"}
    return orjson.dumps({**native, "context": context}, option=orjson.OPT_SORT_KEYS).decode()


def with_query_id(canonical: str, query_id: str) -> dict[str, Any]:
    """A stored canonical query made sendable again under this request's query id."""
    native: dict[str, Any] = orjson.loads(canonical)
    native["context"]["queryId"] = query_id
    return native


@dataclass
class Recording:
    """The native queries of one computed answer and their ETags; `fresh` holds answers a failed
    check already fetched (canonical query → answer), each used once instead of asking again."""

    fresh: dict[str, Answered] = field(default_factory=dict)
    sent: list[tuple[str, str | None]] = field(default_factory=list)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def query(
        self, client: DruidClient, native: dict[str, Any], budget_secs: float, client_gone: ClientGone
    ) -> list[Any]:
        """Rows of one native query, its ETag kept."""
        canonical = canonical_native(native)
        with self._guard:
            answered = self.fresh.pop(canonical, None)
        if answered is None:
            answered = client.conditional_query(native, budget_secs, client_gone, NO_TAG)
        with self._guard:
            self.sent.append((canonical, answered.etag))
        if answered.rows is None:
            raise BackendError("The analytics backend answered in an unexpected shape.")
        return answered.rows

    def validators(self) -> tuple[Validator, ...] | None:
        # Sorted: parts answered on several threads come in any order, the ETag must not move.
        if any(tag is None for _, tag in self.sent):
            return None
        return tuple(sorted((canonical, str(tag)) for canonical, tag in self.sent))


# Open recordings by the query id of the request computing the answer.
_RECORDINGS: dict[str, Recording] = {}


def recording_for(query_id: str) -> Recording | None:
    """The recording open for the request that sends a query with this id, if any."""
    return _RECORDINGS.get(query_id.split("-", 1)[0])


class DruidVersions:
    """Revalidates stored answers with conditional native queries; records the ETags of new ones."""

    def __init__(self, client: DruidClient, datasource: str) -> None:
        self.client = client
        self.datasource = datasource

    def version(self, plan: ResultPlan, scope: Scope) -> str:
        # Nothing is known before the queries run; the ETags are the version (in the validators).
        return f"druid:{self.datasource}"

    def check(self, validators: tuple[Validator, ...], scope: Scope) -> Check:
        """Each stored query again with its ETag: all 304, current; the first 200 is a fresh answer."""
        for canonical, tag in validators:
            native = with_query_id(canonical, scope.query_id)
            answered = self.client.conditional_query(native, scope.remaining_secs(), scope.client_gone, tag)
            if answered.rows is not None:
                return Check(current=False, fresh={canonical: answered})
        return Check(current=True)

    @contextmanager
    def recording(self, fresh: object, scope: Scope) -> Iterator[Recording]:
        recording = Recording(dict(fresh) if isinstance(fresh, dict) else {})
        _RECORDINGS[scope.query_id] = recording
        try:
            yield recording
        finally:
            del _RECORDINGS[scope.query_id]
