"""Druid's data version: the segments the broker would read for a plan's datasource and interval.

The broker's own timeline is asked (`/druid/v2/datasources/<ds>/candidates`), not the
coordinator's metadata: the coordinator knows of new segments before any historical serves
them, and an answer read from the old segments stored under the new version would stay stale.
The broker's view only moves forward, so an answer computed after the version was read is at
least as new as it. docs/druid-behaviour.md says what Druid's own ETag does and why it is not used.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from proxy.backends.base import Scope
from proxy.backends.druid.client import DruidClient
from proxy.errors import BackendError
from proxy.query.plan import ResultPlan

# The parts of a candidate that name a segment: a new load is a new version of its interval.
_SEGMENT_FIELDS = ("interval", "version", "partitionNumber")


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def segments_version(datasource: str, candidates: Any) -> str:
    """`druid:<datasource>:<digest>` of the segments in a candidates answer, in a stable order."""
    if not isinstance(candidates, list) or not all(isinstance(item, dict) for item in candidates):
        raise BackendError("The analytics backend answered in an unexpected shape.")
    names = sorted("/".join(str(item.get(name)) for name in _SEGMENT_FIELDS) for item in candidates)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
    return f"druid:{datasource}:{digest}"


class DruidVersions:
    """Reads the broker's segments for the plan's interval on every request: one short call,
    no query runs, and a `load` (or any other ingestion) is seen by the next request."""

    def __init__(self, client: DruidClient, datasource: str) -> None:
        self.client = client
        self.datasource = datasource

    def version(self, plan: ResultPlan, scope: Scope) -> str:
        interval = plan.query.interval
        path = (
            f"/druid/v2/datasources/{quote(self.datasource, safe='')}/candidates"
            f"?intervals={_iso(interval.start)}/{_iso(interval.end)}"
        )
        return segments_version(self.datasource, self.client.get_json(path, scope.remaining_secs()))
