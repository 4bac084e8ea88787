"""Druid's data version: the broker's own ETag of each native query an answer was computed from.

Every native query of a computed answer is sent with `If-None-Match`, so its 200 carries the
ETag the broker derives from the query's cache key and the segments it read (from its own
timeline, the very set the answer came from; docs/druid-behaviour.md). A stored answer is served
again only after each of its queries, sent again with that ETag, came back 304 in this request:
nothing runs on Druid, and any segment the broker now reads for the query changes the tag.
A query whose answer carries no ETag (a segment still served by a real-time task) makes the
answer uncacheable. How the queries of an answer are recorded: proxy/backends/druid/conditional.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from proxy.backends.base import Scope
from proxy.backends.druid.client import DruidClient
from proxy.backends.druid.conditional import Recording, close_recording, open_recording, with_query_id
from proxy.cache.entry import Validator
from proxy.cache.results import Check
from proxy.query.plan import ResultPlan


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
        open_recording(scope.query_id, recording)
        try:
            yield recording
        finally:
            close_recording(scope.query_id)
