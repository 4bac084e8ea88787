"""The embedded engine end to end: NDJSON → loader → generation → service, with exact answers.

Twelve hand-written sessions in two organizations, around the 2019 Helsinki DST changes (spring:
2019-03-31 03:00 +02:00 → 04:00 +03:00; autumn: 2019-10-27 04:00 +03:00 → 03:00 +02:00).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from flask.testing import FlaskClient

from proxy.access.store import AccessStore
from proxy.settings import Settings
from proxy.web.app import create_app
from proxyctl.ingest.embedded_loader import INPUT_TYPES, TIMESTAMP_MS, LoadResult, load_into_embedded
from proxyctl.ingest.ndjson import validate_file
from schemas.vocabulary import DIMENSIONS
from tests.support.ids import ORG, OTHER_ORG

HELSINKI = "Europe/Helsinki"


def _session(session_id: str, timestamp: str, org: str = ORG, **fields: Any) -> dict[str, Any]:
    base = {
        "session_duration_secs": 1,
        "distinct_visited_urls_count": 0,
        "visitor_id": f"visitor-{session_id}",
    }
    return {"timestamp": timestamp, "organization_id": org, "session_id": session_id, **base, **fields}


SESSIONS = [
    # Spring, organization ORG: s1 is the last instant of 30 March in Helsinki, s2 the first of the
    # 23-hour 31 March, s3/s4 either side of the switch, s5/s6 either side of local midnight.
    _session("s1", "2019-03-30T23:59:59.999+02:00", visitor_id="v1", city="Helsinki", country="FI",
             device_type="desktop", distinct_visited_urls=["/a", "/b"], rooms=["lobby"], session_duration_secs=100),
    _session("s2", "2019-03-30T22:00:00Z", visitor_id="v2", city=None, country="FI", device_type="mobile",
             distinct_visited_urls=["/a"], rooms=[], session_duration_secs=50),
    _session("s3", "2019-03-31T02:59:59.999+02:00", visitor_id="v3", city="Espoo", country="FI",
             distinct_visited_urls=[], rooms=["lobby", "vip"], session_duration_secs=30),
    _session("s4", "2019-03-31T04:00:00+03:00", visitor_id="v1", city="Helsinki",
             distinct_visited_urls=["/b", "/c"], rooms=["vip"], session_duration_secs=200),
    _session("s5", "2019-03-31T23:59:59.999+03:00", visitor_id="v4", city="Tampere", country="FI",
             distinct_visited_urls=["/c"], session_duration_secs=10),
    _session("s6", "2019-04-01T00:00:00.000+03:00", visitor_id="v2", city="Helsinki", country="FI",
             distinct_visited_urls=["/a", "/c"], rooms=["lobby"], session_duration_secs=60),
    # Autumn: s7 in the first 03:00 hour (+03:00), s8 in the repeated one (+02:00).
    _session("s7", "2019-10-27T03:30:00+03:00", visitor_id="v5", city="Helsinki", distinct_visited_urls=["/a"]),
    _session("s8", "2019-10-27T03:30:00+02:00", visitor_id="v5", city=None),
    _session("s9", "2019-10-27T00:00:00+03:00", visitor_id="v6", city="Oulu", distinct_visited_urls=["/d"]),
    # The other organization, at the same instants.
    _session("b1", "2019-03-31T04:00:00+03:00", OTHER_ORG, city="Helsinki", distinct_visited_urls=["/a"],
             rooms=["lobby"], session_duration_secs=1000),
    _session("b2", "2019-03-31T00:00:00+02:00", OTHER_ORG, city=None, session_duration_secs=500),
    _session("b3", "2019-10-27T03:30:00+02:00", OTHER_ORG, city="Helsinki", session_duration_secs=700),
]  # fmt: skip

SPRING = {"start": "2019-03-30T00:00:00+02:00", "end": "2019-04-03T00:00:00+03:00", "time_zone": HELSINKI}
EVERYTHING = {"start": "2019-03-01T00:00:00Z", "end": "2019-11-01T00:00:00Z"}
COUNT = [{"type": "count"}]


def _write(path: Path, sessions: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(session) + "\n" for session in sessions))
    return path


def _load(settings: Settings, path: Path) -> LoadResult:
    return load_into_embedded([path], validate_file(path), settings, lambda line: None)


def _service(data_dir: Path) -> tuple[FlaskClient, dict[str, str]]:
    settings = Settings(backend="embedded", data_dir=data_dir)
    store = AccessStore(settings.access_db_path)
    store.add_organization(ORG, "Demo")
    store.add_organization(OTHER_ORG, "Other")
    keys = {ORG: store.create_key([ORG], "demo"), OTHER_ORG: store.create_key([OTHER_ORG], "other")}
    return create_app(settings).test_client(), keys


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[FlaskClient, dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("embedded")
    _load(Settings(data_dir=data_dir), _write(data_dir / "sessions.ndjson", SESSIONS))
    return _service(data_dir)


def _post(service: tuple[FlaskClient, dict[str, str]], query: dict[str, Any], org: str = ORG) -> Any:
    client, keys = service
    response = client.post(
        f"/api/reporting/v1/orgs/{org}/visitor_sessions",
        json=query,
        headers={"Authorization": f"Token {keys[org]}"},
    )
    assert response.status_code == 200, response.json
    return response.json


def _count(
    service: tuple[FlaskClient, dict[str, str]], filters: Any = None, org: str = ORG, interval: Any = None
) -> int:
    query = {"interval": interval or SPRING, "granularity": "all", "aggregations": COUNT, "filters": filters}
    [[_, count]] = _post(service, query, org)["data"]
    return int(count)


def test_day_series_zero_filled_across_the_spring_change(loaded: tuple[FlaskClient, dict[str, str]]) -> None:
    aggregations = [{"type": "count"}, {"type": "hyperUnique", "fields": ["visitor_id"]},
                    {"type": "avg", "fields": ["session_duration_secs"]}]  # fmt: skip
    body = _post(loaded, {"interval": SPRING, "granularity": "day", "aggregations": aggregations})
    assert body["data"] == [
        ["2019-03-30T00:00:00.000+02:00", 1, 1.0, 100.0],
        ["2019-03-31T00:00:00.000+02:00", 4, 4.0, 72.5],
        ["2019-04-01T00:00:00.000+03:00", 1, 1.0, 60.0],
        ["2019-04-02T00:00:00.000+03:00", 0, 0.0, None],
    ]


def test_hour_series_keeps_the_repeated_autumn_hour_apart(loaded: tuple[FlaskClient, dict[str, str]]) -> None:
    interval = {
        "start": "2019-10-27T00:00:00+03:00",
        "end": "2019-10-27T05:00:00+02:00",
        "time_zone": HELSINKI,
    }
    body = _post(loaded, {"interval": interval, "granularity": "hour", "aggregations": COUNT})
    assert body["data"] == [
        ["2019-10-27T00:00:00.000+03:00", 1],
        ["2019-10-27T01:00:00.000+03:00", 0],
        ["2019-10-27T02:00:00.000+03:00", 0],
        ["2019-10-27T03:00:00.000+03:00", 1],
        ["2019-10-27T03:00:00.000+02:00", 1],
        ["2019-10-27T04:00:00.000+02:00", 0],
    ]


def _selector(dimension: str, value: Any) -> dict[str, Any]:
    return {"type": "selector", "dimension": dimension, "value": value}


def _not(node: dict[str, Any]) -> dict[str, Any]:
    return {"type": "not", "field": node}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (None, 6),
        (_selector("city", "Helsinki"), 3),
        (_not(_selector("city", "Helsinki")), 3),  # s2 has no city: two-valued not keeps it
        (_selector("city", None), 1),
        (_not(_selector("city", None)), 5),
        (_not(_selector("country", "FI")), 1),  # s4, country missing
        (_selector("distinct_visited_urls", "/c"), 3),  # any element
        (_not(_selector("distinct_visited_urls", "/c")), 3),  # s3's empty array included
        (_selector("rooms", None), 2),  # an empty and a missing array
        ({"type": "in", "dimension": "rooms", "values": ["vip", None]}, 4),
        (_not({"type": "in", "dimension": "rooms", "values": ["vip", None]}), 2),
        ({"type": "bound", "dimension": "session_duration_secs", "lower": 50, "upper": "100"}, 3),
        (
            {
                "type": "bound",
                "dimension": "session_duration_secs",
                "lower": 50,
                "upper": 100,
                "upperStrict": True,
            },
            2,
        ),
        ({"type": "bound", "dimension": "city", "lower": "F"}, 4),  # never null
        (_not({"type": "bound", "dimension": "city", "lower": "F"}), 2),
        # As text only "10" and "100" sort at or before "2".
        (
            {
                "type": "bound",
                "dimension": "session_duration_secs",
                "upper": "2",
                "ordering": "lexicographic",
            },
            2,
        ),
        ({"type": "regex", "dimension": "distinct_visited_urls", "pattern": "c$"}, 3),
        ({"type": "like", "dimension": "city", "pattern": "%sinki"}, 3),
        ({"type": "like", "dimension": "city", "pattern": "h%"}, 0),
        (
            {
                "type": "search",
                "dimension": "city",
                "query": {"type": "insensitive_contains", "value": "HEL"},
            },
            3,
        ),
        ({"type": "search", "dimension": "city", "query": {"type": "contains", "value": "hel"}}, 0),
        (_not({"type": "and", "fields": [_selector("country", "FI"), _not(_selector("city", None))]}), 2),
        ([_selector("country", "FI"), _selector("rooms", "lobby")], 3),
    ],
)
def test_filters_are_two_valued_and_match_any_element(
    loaded: tuple[FlaskClient, dict[str, str]], filters: Any, expected: int
) -> None:
    assert _count(loaded, filters) == expected


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        (["rooms"], [[None, 2], ["lobby", 3], ["vip", 2]]),
        (["session_duration_secs"], [[10, 1], [30, 1], [50, 1], [60, 1], [100, 1], [200, 1]]),
        (
            ["rooms", "distinct_visited_urls"],
            [[None, "/a", 1], [None, "/c", 1], ["lobby", None, 1], ["lobby", "/a", 2], ["lobby", "/b", 1],
             ["lobby", "/c", 1], ["vip", None, 1], ["vip", "/b", 1], ["vip", "/c", 1]],
        ),
    ],
)  # fmt: skip
def test_group_by_explodes_arrays_with_empty_as_null(
    loaded: tuple[FlaskClient, dict[str, str]], group_by: list[str], expected: list[list[Any]]
) -> None:
    body = _post(
        loaded, {"interval": SPRING, "granularity": "all", "group_by": group_by, "aggregations": COUNT}
    )
    assert [row[1:] for row in body["data"]] == expected
    assert {row[0] for row in body["data"]} == {"2019-03-30T00:00:00.000+02:00"}


@pytest.mark.parametrize(
    ("granularity", "group_by", "limit", "expected"),
    [
        ("all", "distinct_visited_urls", 3, [["2019-03-30T00:00:00.000+02:00", "/a", 3],
                                             ["2019-03-30T00:00:00.000+02:00", "/c", 3],
                                             ["2019-03-30T00:00:00.000+02:00", "/b", 2]]),
        # Ties on the count fall back to the group (nulls first), then the time.
        ("day", "country", 3, [["2019-03-31T00:00:00.000+02:00", "FI", 3],
                               ["2019-03-31T00:00:00.000+02:00", None, 1],
                               ["2019-03-30T00:00:00.000+02:00", "FI", 1]]),
    ],
)  # fmt: skip
def test_top_n_limits_in_the_result_order(
    loaded: tuple[FlaskClient, dict[str, str]],
    granularity: str,
    group_by: str,
    limit: int,
    expected: list[Any],
) -> None:
    query = {"interval": SPRING, "granularity": granularity, "group_by": [group_by], "aggregations": COUNT,
             "order_by": [{"field": "count", "direction": "desc"}], "limit": limit}  # fmt: skip
    assert _post(loaded, query)["data"] == expected


@pytest.mark.parametrize(
    ("org", "filters", "expected"),
    [
        (ORG, None, 9),
        (OTHER_ORG, None, 3),
        (ORG, _selector("city", "Helsinki"), 4),
        (OTHER_ORG, _selector("city", None), 1),
    ],
)
def test_organizations_never_see_each_other(
    loaded: tuple[FlaskClient, dict[str, str]], org: str, filters: Any, expected: int
) -> None:
    assert _count(loaded, filters, org, EVERYTHING) == expected


def test_a_key_of_one_organization_cannot_read_the_other(loaded: tuple[FlaskClient, dict[str, str]]) -> None:
    client, keys = loaded
    response = client.post(
        f"/api/reporting/v1/orgs/{ORG}/visitor_sessions",
        json={"interval": SPRING, "granularity": "all", "aggregations": COUNT},
        headers={"Authorization": f"Token {keys[OTHER_ORG]}"},
    )
    assert response.status_code == 403


def test_explain_shows_the_sql_and_its_parameters(loaded: tuple[FlaskClient, dict[str, str]]) -> None:
    client, keys = loaded
    response = client.post(
        f"/api/reporting/v1/orgs/{ORG}/visitor_sessions?explain=true",
        json={
            "interval": SPRING,
            "granularity": "day",
            "aggregations": COUNT,
            "filters": _selector("city", "x"),
        },
        headers={"Authorization": f"Token {keys[ORG]}"},
    )
    body: Any = response.json
    assert body["backend"] == "embedded"
    assert "ASOF JOIN" in body["query"]["sql"]
    assert body["query"]["parameters"][:1] == [ORG]
    assert "x" in body["query"]["parameters"]


def test_explain_shows_the_comparison_and_totals_statements(
    loaded: tuple[FlaskClient, dict[str, str]],
) -> None:
    client, keys = loaded
    query = {"interval": SPRING, "granularity": "day", "aggregations": COUNT}
    response = client.post(
        f"/api/reporting/v1/orgs/{ORG}/visitor_sessions?explain=true",
        json={**query, "compare": "previous_year", "totals": True},
        headers={"Authorization": f"Token {keys[ORG]}"},
    )
    body: Any = response.json
    assert set(body) == {"backend", "query", "comparison_query", "totals_query"}
    assert "FILTER (WHERE in_1)" in body["totals_query"]["sql"]
    assert body["comparison_query"]["parameters"] != body["query"]["parameters"]


def test_before_the_first_load_queries_are_empty_and_not_ready(tmp_path: Path) -> None:
    service = _service(tmp_path)
    body = _post(service, {"interval": SPRING, "granularity": "day", "aggregations": COUNT})
    assert [row[1] for row in body["data"]] == [0, 0, 0, 0]
    assert service[0].get("/readyz").status_code == 503
    _load(Settings(data_dir=tmp_path), _write(tmp_path / "sessions.ndjson", SESSIONS))
    assert service[0].get("/readyz").status_code == 200
    assert _count(service, None, ORG, EVERYTHING) == 9


def test_loading_the_same_file_twice_changes_nothing(tmp_path: Path) -> None:
    service = _service(tmp_path)
    settings = Settings(data_dir=tmp_path)
    path = _write(tmp_path / "sessions.ndjson", SESSIONS)
    results = [_load(settings, path) for _ in range(3)]
    assert [(r.generation, r.rows_ingested, r.rows_rejected, r.rows_total) for r in results] == [
        ("sessions-1.duckdb", 12, 0, 12),
        ("sessions-2.duckdb", 12, 0, 12),
        ("sessions-3.duckdb", 12, 0, 12),
    ]
    assert (_count(service, None, ORG, EVERYTHING), _count(service, None, OTHER_ORG, EVERYTHING)) == (9, 3)
    generations = sorted(p.name for p in settings.embedded_dir.glob("sessions-*"))
    assert generations == ["sessions-2.duckdb", "sessions-3.duckdb"]  # the replaced one is kept


def test_a_load_replaces_every_row_of_the_utc_days_it_covers(tmp_path: Path) -> None:
    service = _service(tmp_path)
    settings = Settings(data_dir=tmp_path)
    _load(settings, _write(tmp_path / "all.ndjson", SESSIONS))
    assert _count(service, None, ORG, EVERYTHING) == 9
    # One session on UTC 2019-03-31 replaces s3, s4, s5, s6 and b1 (both organizations).
    _load(settings, _write(tmp_path / "day.ndjson", [_session("n1", "2019-03-31T12:00:00Z", city="Vantaa")]))
    assert (_count(service, None, ORG, EVERYTHING), _count(service, None, OTHER_ORG, EVERYTHING)) == (6, 2)
    assert _count(service, _selector("city", "Vantaa")) == 1


def test_readers_keep_answering_while_loads_run(tmp_path: Path) -> None:
    service = _service(tmp_path)
    settings = Settings(data_dir=tmp_path)
    path = _write(tmp_path / "sessions.ndjson", SESSIONS)
    _load(settings, path)
    loads = threading.Thread(target=lambda: [_load(settings, path) for _ in range(4)])
    loads.start()
    answers: list[int] = []
    while loads.is_alive() or not answers:
        answers.append(_count(service, None, ORG, EVERYTHING))
    loads.join()
    assert set(answers) == {9}, answers
    assert (settings.embedded_dir / "CURRENT").read_text().strip() == "sessions-5.duckdb"


def test_a_current_naming_no_generation_makes_the_engine_unavailable(tmp_path: Path) -> None:
    client, keys = _service(tmp_path)
    (tmp_path / "embedded").mkdir()
    (tmp_path / "embedded" / "CURRENT").write_text("../access.sqlite3\n")
    assert client.get("/readyz").status_code == 503
    response = client.post(
        f"/api/reporting/v1/orgs/{ORG}/visitor_sessions",
        json={"interval": SPRING, "granularity": "all", "aggregations": COUNT},
        headers={"Authorization": f"Token {keys[ORG]}"},
    )
    assert (response.status_code, response.json and response.json["code"]) == (503, "backend_unavailable")


@pytest.mark.parametrize(
    "text",
    [
        "2019-03-31T03:00:00Z",
        "2019-03-31T03:00:00.5+03:00",
        "2019-10-27T03:59:59.999999999+02:00",
        "2019-01-01T00:00:00.0019-09:30",
        "1969-12-31T23:59:59.999Z",
        "2019-01-01T05:45:00.123+05:45",
    ],
)
def test_timestamps_load_as_the_validator_reads_them(text: str) -> None:
    # The validator floors to whole milliseconds: digits past the third are dropped.
    expected = (datetime.fromisoformat(text) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    row = (
        duckdb.connect()
        .execute(f'SELECT {TIMESTAMP_MS} FROM (SELECT ?::VARCHAR AS "timestamp")', [text])
        .fetchone()
    )
    assert row == (expected,)


def test_every_dimension_is_read_from_the_input() -> None:
    assert set(DIMENSIONS) <= set(INPUT_TYPES)
