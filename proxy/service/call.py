"""What one request brings to the service, what the service records about it, and its answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from proxy.runtime.disconnect import ClientGone, never_gone
from proxy.service.representation import JSON, Representation


def no_body() -> bytes:
    """The body of a call that carries none."""
    return b""


@dataclass(frozen=True)
class Call:
    """One request as the service sees it: plain values read from the web request."""

    organization_id: str  # as written in the URL
    authorization: str | None  # the `Authorization` header
    request_id: str
    arrived: float  # on the `time.perf_counter()` clock
    is_json: bool = True  # the body is declared as JSON
    # Read only once the caller is authorized: an unauthenticated body is never read, so a 401
    # wins over a 413 for it.
    body: Callable[[], bytes] = no_body
    explain: bool = False
    client_gone: ClientGone = never_gone
    if_none_match: str | None = None  # the `If-None-Match` header: the answer's ETags the caller holds
    representation: Representation = JSON  # the form the answer is sent in


@dataclass
class Record:
    """What a request did, for its access-log line and metrics; filled in as it goes."""

    request_id: str
    arrived: float  # on the `time.perf_counter()` clock
    organization: str | None = None
    principal: str | None = None
    backend: str | None = None
    backend_ms: float | None = None
    cache: str | None = None  # what the result cache did: hit, miss, revalidated, uncached
    representation: str | None = None  # the media type a report is answered in: JSON or CSV
    backend_query_id: str | None = None  # the service's own id for the backend query
    error_code: str | None = None


@dataclass(frozen=True)
class Answer:
    """A successful answer: a JSON document, already encoded."""

    body: bytes
    etag: str | None = None  # the answer's ETag, when the result cache knows its data version
    cache: str | None = None  # what the result cache did (`X-Cache`)
    not_modified: bool = False  # the caller's copy is current: 304 without a body
