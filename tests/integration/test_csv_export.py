"""CSV answers through the served process (`reporting-proxy serve`, nginx in front, result cache
on) on the embedded engine and the real Druid: the CSV is the JSON answer row by row, values with
commas, quotes and line breaks survive, each form has its own ETag, and the access log and
metrics count CSV answers as any other (issue 15)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date
from typing import Any

import orjson
import pytest
import requests

from proxyctl.ingest.generator import generate
from schemas.vocabulary import DIMENSIONS, TEXT_KINDS
from tests.support.queries import ALL_METRICS
from tests.support.served import ROUTE, Dataset, Service, start_service

pytestmark = pytest.mark.integration

SEED = 1515
JUNE = {
    "start": "2019-06-01T00:00:00+03:00",
    "end": "2019-06-15T00:00:00+03:00",
    "time_zone": "Europe/Helsinki",
}
ORIGIN = "http://127.0.0.1:9"  # a listed CORS origin; nothing is served there
# Cities the generator never writes, given to every 40th session: what RFC 4180 must quote.
TRICKY_CITIES = ('Washington, "D.C."', "Two\nlines", "Carriage\rreturn", '"quoted"', "plain, comma")
QUERIES: dict[str, dict[str, Any]] = {
    "daily_helsinki": {"interval": JUNE, "granularity": "day", "aggregations": ALL_METRICS},
    "hourly_zero_filled": {
        "interval": {"start": "2019-06-03T00:00:00Z", "end": "2019-06-04T00:00:00Z"},
        "granularity": "hour",
        "aggregations": ALL_METRICS,
    },
    "by_city": {
        "interval": JUNE,
        "granularity": "all",
        "group_by": ["city", "country"],
        "aggregations": ALL_METRICS,
    },
    "search_terms_top": {
        "interval": JUNE,
        "granularity": "week",
        "group_by": ["distinct_search_terms"],
        "aggregations": [{"type": "count"}, {"type": "avg", "fields": ["session_duration_secs"]}],
        "order_by": [{"field": "count", "direction": "desc"}],
        "limit": 15,
    },
    "by_duration": {
        "interval": JUNE,
        "granularity": "all",
        "group_by": ["session_duration_secs"],
        "aggregations": [{"type": "count"}],
        "limit": 25,
    },
}
TRICKY = {
    "interval": JUNE,
    "granularity": "all",
    "group_by": ["city"],
    "aggregations": [{"type": "count"}],
    "filters": {"type": "in", "dimension": "city", "values": list(TRICKY_CITIES)},
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    directory = tmp_path_factory.mktemp("csv-data")
    source = directory / "generated.ndjson"
    (organization,) = generate(source, sessions=3000, orgs=1, seed=SEED, start=date(2019, 6, 1), days=14)
    rows = [orjson.loads(line) for line in source.read_bytes().splitlines()]
    for number, row in enumerate(rows):
        if number % 40 == 0:
            row["city"] = TRICKY_CITIES[(number // 40) % len(TRICKY_CITIES)]
    path = directory / "sessions.ndjson"
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return Dataset(path, rows, (organization,))


@pytest.fixture(scope="module", params=["embedded", "druid"])
def service(
    request: pytest.FixtureRequest, dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    env = {
        "PROXY_CACHE_MAX_BYTES": str(4 * 1024 * 1024),
        "PROXY_CORS_ORIGINS": ORIGIN,
        "PROXY_DRUID_DATASOURCE": "csv_export_it",
    }
    data_dir = tmp_path_factory.mktemp(f"csv-{request.param}")
    yield from start_service(request.param, dataset, data_dir, env, front=True)


def _post(service: Service, body: Any, accept: str, **headers: str) -> requests.Response:
    (organization, token) = next(iter(service.tokens.items()))
    return requests.post(
        service.base_url + ROUTE.format(organization),
        json=body,
        headers={"Authorization": f"Token {token}", "Accept": accept, **headers},
        timeout=60,
    )


def _rows(response: requests.Response) -> list[list[str]]:
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(response.content.decode(), newline="")))


def _typed(text: str, column: str) -> Any:
    """A CSV cell as the JSON value it stands for: null, a number, or text."""
    if text == "":
        return None
    textual = column == "timestamp" or DIMENSIONS.get(column) in TEXT_KINDS
    return text if textual else orjson.loads(text)


def _strict(values: list[Any]) -> list[tuple[type, Any]]:
    """Values with their types, so `3` and `3.0` differ."""
    return [(type(value), value) for value in values]


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_the_csv_is_the_json_answer_row_by_row(service: Service, name: str) -> None:
    # CSV first: its answer is computed (a miss), the JSON one then read from the cache.
    as_csv = _post(service, QUERIES[name], "text/csv")
    as_json = _post(service, QUERIES[name], "application/json")
    assert (as_csv.status_code, as_json.status_code) == (200, 200), as_csv.text
    assert (as_csv.headers["X-Cache"], as_json.headers["X-Cache"]) == ("miss", "hit")
    header, *rows = _rows(as_csv)
    answer = as_json.json()
    assert header == [field["name"] for field in answer["fields"]]
    assert len(rows) == len(answer["data"]) > 0
    for row, expected in zip(rows, answer["data"], strict=True):
        assert _strict([_typed(text, column) for text, column in zip(row, header, strict=True)]) == _strict(
            expected
        )
    assert as_csv.content.count(b"\r\n") == len(rows) + 1


def test_commas_quotes_and_line_breaks_survive(service: Service) -> None:
    response = _post(service, TRICKY, "text/csv")
    assert response.status_code == 200
    header, *rows = _rows(response)
    assert header == ["timestamp", "city", "count"]
    assert {row[1] for row in rows} == set(TRICKY_CITIES)
    assert b'"Washington, ""D.C."""' in response.content
    assert b'"Two\nlines"' in response.content and b'"Carriage\rreturn"' in response.content


def test_each_form_has_its_own_etag_and_304(service: Service) -> None:
    body = QUERIES["daily_helsinki"]
    tags = {
        accept: _post(service, body, accept).headers["ETag"] for accept in ("text/csv", "application/json")
    }
    assert tags["text/csv"] != tags["application/json"]
    own = _post(service, body, "text/csv", **{"If-None-Match": tags["text/csv"]})
    other = _post(service, body, "text/csv", **{"If-None-Match": tags["application/json"]})
    assert (own.status_code, own.headers["X-Cache"], own.content) == (304, "revalidated", b"")
    assert (other.status_code, other.headers["ETag"]) == (200, tags["text/csv"])
    assert [part.strip() for part in other.headers["Vary"].split(",")] == ["Accept", "Origin"]


def test_a_browser_origin_may_read_the_csv(service: Service) -> None:
    response = _post(service, QUERIES["daily_helsinki"], "text/csv", Origin=ORIGIN)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "ETag" in response.headers["Access-Control-Expose-Headers"]


def test_totals_as_csv_is_a_406_in_the_json_shape(service: Service) -> None:
    response = _post(service, {**QUERIES["daily_helsinki"], "totals": True}, "text/csv")
    assert (response.status_code, response.headers["Content-Type"]) == (406, "application/json")
    assert response.json()["code"] == "not_acceptable"
    assert "Accept" in response.headers["Vary"]


def _counted(service: Service, status: int) -> float:
    """`reporting_proxy_requests_total` of POSTs to the query route answered with `status`."""
    labels = f'{{method="POST",route="{ROUTE.format("<organization_id>")}",status="{status}"}}'
    metrics = requests.get(service.base_url + "/metrics", timeout=10).text
    found = [
        line.split()[-1]
        for line in metrics.splitlines()
        if line.startswith("reporting_proxy_requests_total" + labels)
    ]
    return float(found[0]) if found else 0.0


def test_csv_answers_are_logged_and_counted(service: Service) -> None:
    before = (_counted(service, 200), _counted(service, 406))
    for request_id, body in (
        ("csv-ok", QUERIES["by_duration"]),
        ("csv-406", {**QUERIES["by_duration"], "totals": True}),
    ):
        _post(service, body, "text/csv", **{"X-Request-Id": request_id})
    assert (_counted(service, 200), _counted(service, 406)) == (before[0] + 1, before[1] + 1)
    log = (service.data_dir / "gunicorn.log").read_text().splitlines()
    lines = [orjson.loads(line) for line in log if line.startswith("{")]
    logged = {
        line["request_id"]: (line["status"], line["error_code"])
        for line in lines
        if line.get("event") == "request" and line.get("request_id", "").startswith("csv-")
    }
    assert logged == {"csv-ok": (200, None), "csv-406": (406, "not_acceptable")}
