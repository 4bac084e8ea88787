"""The independent direct-Druid client of the bench and the integration suite: pydruid's.

Queries are built with pydruid's own builder (`timeseries`, `groupby`, `topn` with
`pydruid.utils` aggregators, filters and post-aggregators), never with the service's
translator, so a report answered both ways checks the translation. pydruid's transport has no
timeout and turns every failure into a bare `IOError`; this client keeps its builder and parsing
and sends over `requests` with a timeout and a typed error.
"""

from __future__ import annotations

from typing import Any

import requests
from pydruid.client import PyDruid
from pydruid.query import Query

_ENDPOINT = "druid/v2/"


class DruidQueryError(RuntimeError):
    """The broker refused or failed a query; the message carries its status and error body."""


class Broker(PyDruid):  # type: ignore[misc]  # pydruid ships no type information
    """pydruid's client with a timeout on every call; answers are parsed into `Query.result`."""

    def __init__(self, url: str, timeout_secs: float = 60.0) -> None:
        super().__init__(url, _ENDPOINT)
        self.timeout_secs = timeout_secs

    def _post(self, query: Query) -> Query:
        headers, body, url = self._prepare_url_headers_and_body(query)
        response = requests.post(url, data=body, headers=headers, timeout=(2.0, self.timeout_secs))
        if response.status_code != 200:
            raise DruidQueryError(f"HTTP {response.status_code} from {url}: {response.text[:500]}")
        query.parse(response.text)
        return query


def rows(query: Query) -> list[dict[str, Any]]:
    """The parsed answer of a query the broker ran."""
    result: list[dict[str, Any]] = query.result
    return result
