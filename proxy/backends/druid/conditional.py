"""The native queries of one answer the result cache is computing, and the ETags Druid gave them.

The queries reach the client from inside the backend, some on other threads (a report's extra
parts), so `DruidClient.query` finds the open recording by the query's `queryId`: the request's
own id, or `<id>-<part>` for an extra part of it. Every native query of a request must carry one
of those, or it would not be revalidated. proxy/backends/druid/versions.py opens recordings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from proxy.cache.entry import Validator
from proxy.errors import BackendError
from proxy.runtime.disconnect import ClientGone


class ConditionalSender(Protocol):
    """What sends a native query with `If-None-Match` (the Druid client)."""

    def conditional_query(
        self, native: dict[str, Any], budget_secs: float, client_gone: ClientGone, if_none_match: str
    ) -> Answered:
        """Rows and their ETag, or rows None when `if_none_match` is still current (304)."""


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
        self, client: ConditionalSender, native: dict[str, Any], budget_secs: float, client_gone: ClientGone
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
        """None when a query carried no ETag, or when no query was recorded at all: an answer
        whose queries went unseen (a part sent under another id) must never be kept unchecked."""
        if not self.sent or any(tag is None for _, tag in self.sent):
            return None
        # Sorted: parts answered on several threads come in any order, the ETag must not move.
        return tuple(sorted((canonical, str(tag)) for canonical, tag in self.sent))


# Open recordings by the query id of the request computing the answer.
_RECORDINGS: dict[str, Recording] = {}


def recording_for(query_id: str) -> Recording | None:
    """The recording open for the request that sends a query with this id, if any."""
    return _RECORDINGS.get(query_id.split("-", 1)[0])


def open_recording(query_id: str, recording: Recording) -> None:
    """Queries carrying this request's id are recorded from now on."""
    _RECORDINGS[query_id] = recording


def close_recording(query_id: str) -> None:
    del _RECORDINGS[query_id]
