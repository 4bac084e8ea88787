"""CSV answers (`Accept: text/csv`, issue 15): negotiation, RFC 4180, the 406 rule, and ETags
that differ per form so a 304 is only ever given for the form the caller holds."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from proxy.backends.embedded.backend import EmbeddedBackend
from proxy.errors import NotAcceptable
from proxy.service.representation import (
    CSV,
    JSON,
    Representation,
    answer_condition,
    check_representable,
    refused_keys,
    representation_tag,
)
from proxy.settings import Settings
from proxy.web.representations import csv_table, negotiated
from schemas.model import Query
from schemas.request import QuerySchema
from tests.unit.web import QUERY, Web, make_web, settings_for, url

MIB = 1024 * 1024
CSV_TYPE = "text/csv; charset=utf-8"
TOTALS = {**QUERY, "totals": True}
COMPARE = {**QUERY, "compare": "previous_period"}


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),  # as before: no header
        ("", JSON),
        ("*/*", JSON),  # both acceptable alike: the service's preference
        ("application/json", JSON),
        ("application/*", JSON),
        ("text/html", JSON),  # names neither: JSON, as before CSV existed
        ("text/html;q=0.9, image/png", JSON),
        ("text/csv", CSV),
        ("TEXT/CSV", CSV),
        ("text/csv; charset=utf-8", CSV),  # parameters do not hide the type
        ("text/csv;header=present", CSV),
        ("text/*", CSV),
        ("text/csv, application/json", JSON),  # a tie
        ("application/json, text/csv", JSON),
        ("text/csv;q=0.5, application/json;q=0.9", JSON),
        ("application/json;q=0.5, text/csv", CSV),
        ("text/csv;q=0.9, application/json;q=0.5", CSV),
        ("text/csv, */*;q=0.1", CSV),
        ("text/csv;q=0.5, */*", JSON),
        ("text/html, */*;q=0.8", JSON),
        ("text/csv;q=0", JSON),  # refuses CSV, names nothing else: JSON, never a 406
        ("text/csv;q=0, */*", JSON),
        ("application/json;q=0, */*", CSV),  # the explicit q=0 wins over the wildcard
        ("application/json;q=0", JSON),
        (",,;;;q=x", JSON),
        ("text/csv;q=abc", JSON),
    ],
)
def test_negotiation(accept: str | None, expected: Representation) -> None:
    assert negotiated(parse_accept_header(accept, MIMEAccept)) == expected


def _table(fields: list[str], data: list[list[Any]]) -> bytes:
    answer = {"fields": [{"name": name, "type": "dimension"} for name in fields], "data": data}
    return csv_table(orjson.dumps(answer))


@pytest.mark.parametrize(
    ("cell", "text"),
    [
        ("Helsinki", "Helsinki"),
        ("東京", "東京"),
        ("Washington, D.C.", '"Washington, D.C."'),
        ('say "hi"', '"say ""hi"""'),
        ('"', '""""'),
        ("line\nbreak", '"line\nbreak"'),
        ("carriage\rreturn", '"carriage\rreturn"'),
        ("crlf\r\ninside", '"crlf\r\ninside"'),
        (" padded ", " padded "),
        ("=1+1", "=1+1"),  # as in JSON: no spreadsheet escaping
        (None, ""),
        (0, "0"),
        (-7, "-7"),
        (9007199254740993, "9007199254740993"),
        (0.5, "0.5"),
        (123.0, "123.0"),
        (1e-05, "0.00001"),  # as the JSON answer prints it, not Python's `1e-05`
        (1e-07, "1e-7"),
        (1.5e16, "1.5e+16"),
        (2 / 3, "0.6666666666666666"),
        ("2019-03-31T03:00:00.000+03:00", "2019-03-31T03:00:00.000+03:00"),
        ("2019-01-01T00:00:00.000Z", "2019-01-01T00:00:00.000Z"),
    ],
)
def test_a_cell_is_written_as_rfc_4180_asks_and_as_json_prints_it(cell: Any, text: str) -> None:
    assert _table(["x", "y"], [[cell, 1]]) == f"x,y\r\n{text},1\r\n".encode()


def test_a_table_is_a_header_line_then_one_crlf_line_per_row() -> None:
    data = [
        ["2019-01-01T00:00:00.000Z", "a,b", None, 3, 1.25],
        ["2019-01-02T00:00:00.000Z", 'q"', "x", 0, None],
    ]
    body = _table(["timestamp", "city", "country", "count", "session_duration_secs_avg"], data)
    assert body == (
        b"timestamp,city,country,count,session_duration_secs_avg\r\n"
        b'2019-01-01T00:00:00.000Z,"a,b",,3,1.25\r\n'
        b'2019-01-02T00:00:00.000Z,"q""",x,0,\r\n'
    )
    rows = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert rows[1:] == [
        ["2019-01-01T00:00:00.000Z", "a,b", "", "3", "1.25"],
        ["2019-01-02T00:00:00.000Z", 'q"', "x", "0", ""],
    ]


def test_no_rows_is_the_header_line_alone() -> None:
    assert _table(["timestamp", "count"], []) == b"timestamp,count\r\n"


def _query() -> Query:
    query: Query = QuerySchema(Settings()).load(QUERY)
    return query


@pytest.mark.parametrize(
    ("representation", "totals", "compare", "refused"),
    [
        (JSON, True, True, []),
        (CSV, False, False, []),
        (CSV, True, False, ["totals"]),
        (CSV, False, True, ["compare"]),
        (CSV, True, True, ["totals", "compare"]),
    ],
)
def test_csv_refuses_totals_and_compare(
    representation: Representation, totals: bool, compare: bool, refused: list[str]
) -> None:
    plain = _query()
    query = replace(plain, totals=totals, compare=plain.interval if compare else None)
    assert refused_keys(query, representation) == refused
    if refused:
        with pytest.raises(NotAcceptable) as caught:
            check_representable(query, representation)
        assert caught.value.errors is not None and list(caught.value.errors) == refused
    else:
        check_representable(query, representation)


@pytest.fixture
def web(tmp_path: Path) -> Web:
    return make_web(tmp_path)


@pytest.mark.parametrize(
    ("body", "accept", "status", "content_type"),
    [
        (QUERY, "text/csv", 200, CSV_TYPE),
        (QUERY, "text/html", 200, "application/json"),
        (QUERY, None, 200, "application/json"),
        (TOTALS, "text/csv", 406, "application/json"),
        (COMPARE, "text/csv", 406, "application/json"),
        ({**QUERY, "totals": False}, "text/csv", 200, CSV_TYPE),
        (TOTALS, "application/json", 200, "application/json"),
        (TOTALS, "text/csv;q=0.5, application/json", 200, "application/json"),
        ({"granularity": "day"}, "text/csv", 400, "application/json"),  # errors stay JSON
    ],
)
def test_the_answer_follows_accept_and_errors_stay_json(
    web: Web, body: dict[str, Any], accept: str | None, status: int, content_type: str
) -> None:
    headers = {**web.auth("a"), **({"Accept": accept} if accept else {})}
    response = web.client.post(url(), json=body, headers=headers)
    assert (response.status_code, response.content_type) == (status, content_type)
    # A 400 does not depend on `Accept`; an answer and a 406 do.
    assert set(response.vary) == ({"Origin"} if status == 400 else {"Accept", "Origin"})


def test_a_406_is_the_one_error_shape_naming_the_keys(web: Web) -> None:
    response = web.client.post(url(), json=TOTALS, headers={**web.auth("a"), "Accept": "text/csv"})
    assert response.status_code == 406
    assert response.json == {
        "detail": "A text/csv answer cannot carry totals.",
        "code": "not_acceptable",
        "errors": {"totals": ["Not available as text/csv; ask for application/json."]},
    }


def test_an_explanation_ignores_accept(web: Web) -> None:
    headers = {**web.auth("a"), "Accept": "text/csv"}
    response = web.client.post(url(suffix="?explain=true"), json=TOTALS, headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.reporting-proxy.explanation+json"
    assert "Accept" not in response.vary


def test_the_csv_is_the_json_answer_row_by_row(web: Web) -> None:
    grouped = {**QUERY, "group_by": ["country"]}
    as_json = web.client.post(url(), json=grouped, headers=web.auth("a")).json
    as_csv = web.client.post(url(), json=grouped, headers={**web.auth("a"), "Accept": "text/csv"})
    rows = list(csv.reader(io.StringIO(as_csv.get_data(as_text=True), newline="")))
    assert rows[0] == [field["name"] for field in as_json["fields"]] == ["timestamp", "country", "count"]
    assert len(rows) == len(as_json["data"]) + 1


@pytest.mark.parametrize(
    ("header", "representation", "condition"),
    [
        (None, CSV, None),
        ('"k-csv"', CSV, '"k"'),
        ('W/"k-csv"', CSV, '"k"'),
        ('"k"', CSV, None),  # the JSON form's tag is no tag of the CSV form
        ('"j", "k-csv"', CSV, '"k"'),
        ("*", CSV, "*"),
        ('"k-csv"', JSON, '"k-csv"'),  # passed as it is: it equals no answer's tag
        ('"k"', JSON, '"k"'),
    ],
)
def test_if_none_match_counts_only_the_asked_forms_tags(
    header: str | None, representation: Representation, condition: str | None
) -> None:
    assert answer_condition(header, representation) == condition


@pytest.mark.parametrize(
    ("tag", "representation", "shown"), [('"k"', JSON, '"k"'), ('"k"', CSV, '"k-csv"'), (None, CSV, None)]
)
def test_each_form_shows_its_own_tag(
    tag: str | None, representation: Representation, shown: str | None
) -> None:
    assert representation_tag(tag, representation) == shown


@pytest.fixture
def cached(tmp_path: Path) -> Web:
    backend = EmbeddedBackend(settings_for(tmp_path, cache_max_bytes=MIB))
    return make_web(tmp_path, backend, cache_max_bytes=MIB)


def _post(web: Web, accept: str, if_none_match: str | None = None) -> Any:
    headers = {
        **web.auth("a"),
        "Accept": accept,
        **({"If-None-Match": if_none_match} if if_none_match else {}),
    }
    return web.client.post(url(), json=QUERY, headers=headers)


def test_the_forms_share_one_cache_entry_under_different_etags(cached: Web) -> None:
    as_json = _post(cached, "application/json")
    as_csv = _post(cached, "text/csv")
    assert (as_json.headers["X-Cache"], as_csv.headers["X-Cache"]) == ("miss", "hit")
    assert as_csv.content_type == CSV_TYPE and as_csv.headers["Cache-Control"] == "private, no-cache"
    assert as_json.headers["ETag"] != as_csv.headers["ETag"]


@pytest.mark.parametrize(
    ("accept", "held", "status"),
    [
        ("text/csv", "csv", 304),
        ("text/csv", "json", 200),  # a JSON copy is no copy of the CSV
        ("application/json", "csv", 200),
        ("application/json", "json", 304),
        ("text/csv", "both", 304),
        ("text/csv", "weak csv", 304),
    ],
)
def test_a_304_only_for_the_form_the_caller_holds(cached: Web, accept: str, held: str, status: int) -> None:
    tags = {
        "json": _post(cached, "application/json").headers["ETag"],
        "csv": _post(cached, "text/csv").headers["ETag"],
    }
    header = {"both": f"{tags['json']}, {tags['csv']}", "weak csv": f"W/{tags['csv']}"}.get(held) or tags[
        held
    ]
    response = _post(cached, accept, header)
    assert response.status_code == status
    own = tags["csv" if accept == "text/csv" else "json"]
    assert response.headers["ETag"] == own
    assert "Accept" in response.vary
    expected_type = None if status == 304 else (CSV_TYPE if accept == "text/csv" else "application/json")
    assert (response.content_type if status == 200 else None) == expected_type
