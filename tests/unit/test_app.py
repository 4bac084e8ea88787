"""The app over HTTP (the Flask test client): routes, access order, the one error shape, and the
Druid backend's faults over a stub broker on a loopback port."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient
from gunicorn.http.errors import ChunkMissingTerminator, InvalidChunkSize, NoMoreData  # type: ignore[import-untyped]

from proxy.access.store import AccessStore
from proxy.errors import ClientDisconnected
from proxy.service.call import Call, Record
from proxy.settings import Settings
from proxy.web.app import create_app
from tests.support.ids import ORG, OTHER_ORG, UNKNOWN_ORG
from tests.support.stub_broker import Answer, StubBroker, refused_connects, stub_broker, unanswered_connects
from tests.unit.web import JWT_SECRET, StubBackend, make_web, url
from tests.unit.web import QUERY as QUERY_UTC

SECRET = JWT_SECRET
URL = url()
QUERY = {
    "interval": {
        "start": "2019-01-01T00:00:00+02:00",
        "end": "2019-01-02T00:00:00+02:00",
        "time_zone": "Europe/Helsinki",
    },
    "granularity": "day",
    "aggregations": [{"type": "hyperUnique", "fields": ["visitor_id"]}],
    "filters": [{"type": "selector", "dimension": "city", "value": "Helsinki"}],
}
DRUID_ROWS = [
    {"timestamp": "2019-01-01T00:00:00.000+02:00", "result": {"visitor_id_hyper_unique": 212.05452}}
]


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    with stub_broker() as stub:
        yield stub


@pytest.fixture
def settings(tmp_path: Path, broker: StubBroker) -> Settings:
    return Settings(
        backend="druid",
        data_dir=tmp_path,
        druid_broker_url=broker.url,
        request_timeout_secs=3.0,
        jwt_algorithm="HS256",
        jwt_secret=SECRET,
        # The result cache sends every query conditionally and counts on ETags: its own tests cover that.
        cache_max_bytes=0,
    )


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    store = AccessStore(settings.access_db_path)
    store.add_organization(ORG, "Demo")
    store.add_organization(OTHER_ORG, "Other")
    revoked = store.create_key([ORG], "revoked")
    store.revoke_key(revoked.split("_")[1])
    return {
        "good": store.create_key([ORG], "good"),
        "other": store.create_key([OTHER_ORG], "other"),
        "revoked": revoked,
    }


@pytest.fixture
def client(settings: Settings, keys: dict[str, str]) -> FlaskClient:
    return create_app(settings).test_client()


def _jwt(**claims: Any) -> str:
    payload = {"sub": "alice", "orgs": [ORG], "exp": int(time.time()) + 60, **claims}
    return "Bearer " + jwt.encode(payload, SECRET, algorithm="HS256")


def _header(keys: dict[str, str], kind: str) -> dict[str, str]:
    table = {
        "none": {},
        "empty": {"Authorization": ""},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "wrong_key": {"Authorization": "Token rpk_nothere_secret"},
        "good_key": {"Authorization": f"Token {keys['good']}"},
        "revoked_key": {"Authorization": f"Token {keys['revoked']}"},
        "other_org_key": {"Authorization": f"Token {keys['other']}"},
        "good_jwt": {"Authorization": _jwt()},
        "expired_jwt": {"Authorization": _jwt(exp=int(time.time()) - 600)},
        "forged_jwt": {"Authorization": _jwt()[:-4] + "AAAA"},
        "jwt_without_grant": {"Authorization": _jwt(orgs=[OTHER_ORG])},
    }
    return table[kind]


@pytest.mark.parametrize(
    ("credential", "org", "status", "code"),
    [
        ("none", ORG, 401, "not_authenticated"),
        ("empty", ORG, 401, "not_authenticated"),
        ("basic", ORG, 401, "not_authenticated"),
        ("wrong_key", ORG, 401, "not_authenticated"),
        ("revoked_key", ORG, 401, "not_authenticated"),
        ("expired_jwt", ORG, 401, "not_authenticated"),
        ("forged_jwt", ORG, 401, "not_authenticated"),
        ("other_org_key", ORG, 403, "forbidden"),
        ("jwt_without_grant", ORG, 403, "forbidden"),
        ("good_key", UNKNOWN_ORG, 404, "organization_not_found"),
        ("good_key", "not-a-uuid", 404, "organization_not_found"),
        ("wrong_key", UNKNOWN_ORG, 401, "not_authenticated"),
    ],
)
def test_access_is_checked_before_anything_else(
    client: FlaskClient, keys: dict[str, str], credential: str, org: str, status: int, code: str
) -> None:
    response = client.post(
        f"/api/reporting/v1/orgs/{org}/visitor_sessions",
        json={"not": "even valid"},
        headers=_header(keys, credential),
    )
    assert (response.status_code, response.json["code"]) == (status, code)
    assert response.headers["X-Request-Id"]
    assert ("WWW-Authenticate" in response.headers) == (status == 401)


@pytest.mark.parametrize("credential", ["good_key", "good_jwt"])
def test_seed_example_through_the_service(
    client: FlaskClient, broker: StubBroker, keys: dict[str, str], credential: str
) -> None:
    broker.on("POST", "/druid/v2/", Answer.json(DRUID_ROWS))
    response = client.post(URL, json=QUERY, headers={**_header(keys, credential), "X-Request-Id": "req-42"})
    assert response.status_code == 200
    assert response.json == {
        "fields": [
            {"name": "timestamp", "type": "dimension"},
            {"name": "visitor_id_hyper_unique", "type": "metric"},
        ],
        "data": [["2019-01-01T00:00:00.000+02:00", 212.05452]],
    }
    (sent,) = [request.json() for request in broker.received]
    query_id = sent["context"].pop("queryId")
    assert sent["context"] == {"timeout": 2850, "skipEmptyBuckets": True}
    # The service's own id for the query, never the caller's request id (which is only echoed).
    assert re.fullmatch("[0-9a-f]{32}", query_id)
    assert response.headers["X-Request-Id"] == "req-42"
    assert sent["filter"]["fields"][0]["matchValue"] == ORG


def test_explain_runs_nothing(client: FlaskClient, keys: dict[str, str], broker: StubBroker) -> None:
    response = client.post(URL + "?explain=true", json=QUERY, headers=_header(keys, "good_key"))
    assert response.status_code == 200
    assert response.json["backend"] == "druid"
    assert response.json["query"]["queryType"] == "timeseries"
    assert broker.received == []


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_request"),
        (b"[1, 2]", "application/json", 400, "invalid_request"),
        (json.dumps(QUERY).encode(), "text/plain", 415, "unsupported_media_type"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 413, "request_entity_too_large"),
        (b"{" + b'"a":' * 5000 + b"1" + b"}" * 5000, "application/json", 400, "invalid_request"),
    ],
)
def test_bad_bodies_get_json_errors(
    client: FlaskClient, keys: dict[str, str], data: bytes, content_type: str, status: int, code: str
) -> None:
    response = client.post(URL, data=data, content_type=content_type, headers=_header(keys, "good_key"))
    assert (response.status_code, response.json["code"]) == (status, code)
    assert set(response.json) <= {"detail", "code", "errors"}


class ChunkedInput:
    """gunicorn's chunked body as a WSGI input: the body in pieces, then `error` if one is set."""

    def __init__(self, body: bytes, error: Exception | None = None) -> None:
        self.pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
        self.error = error

    def read(self, size: int = -1) -> bytes:
        if self.pieces:
            return self.pieces.pop(0)
        if self.error is not None:
            raise self.error
        return b""


def _padded(size: int) -> bytes:
    return json.dumps(QUERY).encode().ljust(size)


@pytest.mark.parametrize(
    ("stream", "terminated", "status", "code"),
    [
        (ChunkedInput(_padded(65_536)), True, 200, None),
        # Its first 65,536 bytes are a valid query: cut there, it would pass for the whole.
        (ChunkedInput(_padded(65_816)), True, 413, "request_entity_too_large"),
        (ChunkedInput(b"{", InvalidChunkSize(b"zz")), True, 400, "invalid_request"),
        (ChunkedInput(b"{", ChunkMissingTerminator(b"xx")), True, 400, "invalid_request"),
        (ChunkedInput(b"{", NoMoreData(b"")), True, 400, "invalid_request"),
        # A server that cannot end an unsized body: nothing is read, so it is not JSON.
        (ChunkedInput(_padded(100)), False, 400, "invalid_request"),
    ],
    ids=[
        "at_the_limit",
        "past_the_limit",
        "bad_chunk_size",
        "no_chunk_terminator",
        "cut_short",
        "unterminated",
    ],
)
def test_a_chunked_body_is_read_whole_or_refused(
    client: FlaskClient,
    keys: dict[str, str],
    stream: ChunkedInput,
    terminated: bool,
    status: int,
    code: str | None,
) -> None:
    environ = {"wsgi.input": stream, **({"wsgi.input_terminated": True} if terminated else {})}
    headers = {
        **_header(keys, "good_key"),
        "Transfer-Encoding": "chunked",
        "Content-Type": "application/json",
    }
    response = client.post(URL + "?explain=true", headers=headers, environ_overrides=environ)
    assert (response.status_code, response.json.get("code")) == (status, code)


def test_validation_errors_name_the_field(client: FlaskClient, keys: dict[str, str]) -> None:
    response = client.post(URL, json={**QUERY, "granularity": "fortnight"}, headers=_header(keys, "good_key"))
    assert response.status_code == 400
    assert list(response.json["errors"]) == ["granularity"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "allow"),
    [
        ("GET", URL, 405, "method_not_allowed", "POST"),
        ("POST", "/api/reporting/v1/nothing", 404, "not_found", None),
        ("OPTIONS", URL, 405, "method_not_allowed", "POST"),
        ("OPTIONS", "/healthz", 405, "method_not_allowed", "GET, HEAD"),
    ],
)
def test_routing_errors_are_json(
    client: FlaskClient, method: str, path: str, status: int, code: str, allow: str | None
) -> None:
    response = client.open(path, method=method)
    assert (response.status_code, response.json["code"]) == (status, code)
    assert response.headers.get("Allow") == allow


def _druid_error(category: str, status: int) -> Answer:
    body = {
        "error": "druidException",
        "errorCode": "x",
        "persona": "OPERATOR",
        "category": category,
        "errorMessage": "secret internals at historical-7:8083",
        "context": {"host": "historical-7:8083"},
    }
    return Answer.json(body, status)


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (Answer(stall="before_headers"), 504, "backend_timeout"),
        (_druid_error("TIMEOUT", 504), 504, "backend_timeout"),
        (_druid_error("CAPACITY_EXCEEDED", 429), 503, "backend_overloaded"),
        (_druid_error("RUNTIME_FAILURE", 500), 502, "backend_error"),
        (_druid_error("INVALID_INPUT", 400), 502, "backend_error"),
        (
            Answer.json({"error": "Query timeout", "errorClass": "x", "host": "h"}, 500),
            504,
            "backend_timeout",
        ),
        (Answer.json({"error": "Resource limit exceeded"}, 400), 400, "invalid_request"),
        (Answer(502, b"<html>Bad gateway</html>", "text/html"), 503, "backend_unavailable"),
        (Answer(200, b'[{"timestamp": "2019-01-01T00:00:00.000+02:00", "res'), 502, "backend_error"),
        (
            Answer(200, b'[{"timestamp": "2019-01-01T00:00:00.000+02:00", "result": {}}]', truncate_at=20),
            503,
            "backend_unavailable",
        ),
        (Answer.json({"unexpected": "object"}), 502, "backend_error"),
        (Answer.json([{"no_timestamp": 1}]), 502, "backend_error"),
    ],
    ids=[
        "no_answer_in_the_budget",
        "druid_timeout",
        "druid_capacity",
        "druid_runtime_failure",
        "druid_invalid_input",
        "legacy_timeout",
        "legacy_resource_limit",
        "html_bad_gateway",
        "truncated_200",
        "connection_dropped_mid_body",
        "object_instead_of_rows",
        "rows_without_timestamp",
    ],
)
def test_broker_failures_are_mapped(
    settings: Settings, broker: StubBroker, keys: dict[str, str], answer: Answer, status: int, code: str
) -> None:
    broker.on("POST", "/druid/v2/", answer)
    client = create_app(replace(settings, request_timeout_secs=0.5)).test_client()
    response = client.post(URL, json=QUERY, headers={**_header(keys, "good_key"), "X-Request-Id": "req-7"})
    assert (response.status_code, response.json["code"]) == (status, code)
    assert "historical" not in response.get_data(as_text=True)
    assert ("Retry-After" in response.headers) == (status == 503)
    (query_id,) = broker.query_ids()
    if code == "backend_timeout":  # Druid's own timeout too: the cancel is unconditional
        broker.wait_for(f"DELETE /druid/v2/{query_id}")
    assert broker.lines() == ["POST /druid/v2/"] + (
        [f"DELETE /druid/v2/{query_id}"] if code == "backend_timeout" else []
    )


@pytest.mark.parametrize(
    "unreachable", [refused_connects, unanswered_connects], ids=["refused", "connect_timeout"]
)
def test_an_unreachable_broker_is_unavailable(
    settings: Settings, keys: dict[str, str], unreachable: Callable[[], AbstractContextManager[str]]
) -> None:
    with unreachable() as url:
        app = create_app(replace(settings, druid_broker_url=url, connect_timeout_secs=0.2))
        started = time.monotonic()
        response = app.test_client().post(URL, json=QUERY, headers=_header(keys, "good_key"))
    assert (response.status_code, response.json["code"]) == (503, "backend_unavailable")
    assert time.monotonic() - started < 0.5  # the connect timeout and some slack


def test_a_broker_slower_than_the_connect_timeout_still_answers_in_the_budget(
    settings: Settings, broker: StubBroker, keys: dict[str, str]
) -> None:
    broker.on("POST", "/druid/v2/", replace(Answer.json(DRUID_ROWS), delay_secs=0.4))
    client = create_app(replace(settings, connect_timeout_secs=0.2)).test_client()
    response = client.post(URL, json=QUERY, headers=_header(keys, "good_key"))
    assert response.status_code == 200


def test_timeout_cancels_the_druid_query(
    settings: Settings, broker: StubBroker, keys: dict[str, str]
) -> None:
    broker.on("POST", "/druid/v2/", Answer(stall="before_headers"))
    client = create_app(replace(settings, request_timeout_secs=0.3)).test_client()
    client.post(URL, json=QUERY, headers={**_header(keys, "good_key"), "X-Request-Id": "req-9"})
    (query_id,) = broker.query_ids()
    broker.wait_for(f"DELETE /druid/v2/{query_id}")
    assert broker.lines() == ["POST /druid/v2/", f"DELETE /druid/v2/{query_id}"]


@pytest.mark.parametrize(
    ("request_start", "status", "code"),
    [
        # Queued at the front for longer than the budget: refused at once, nothing run.
        (lambda: f"t={time.time() - 5:.3f}", 503, "service_busy"),
        # A stamp in the future or malformed is not the front's: the budget starts at pick-up.
        (lambda: f"t={time.time() + 3600:.3f}", 200, None),
        (lambda: "t=yesterday", 200, None),
        (lambda: f"{time.time() - 5:.3f}", 200, None),
    ],
    ids=["queued_past_budget", "future", "malformed", "no_t_prefix"],
)
def test_the_budget_counts_from_the_fronts_arrival_stamp(
    settings: Settings,
    keys: dict[str, str],
    broker: StubBroker,
    request_start: Callable[[], str],
    status: int,
    code: str | None,
) -> None:
    broker.on("POST", "/druid/v2/", Answer.json(DRUID_ROWS))
    client = create_app(settings).test_client()
    headers = {**_header(keys, "good_key"), "X-Request-Start": request_start()}
    response = client.post(URL, json=QUERY, headers=headers)
    assert (response.status_code, response.json.get("code")) == (status, code)
    assert ("Retry-After" in response.headers) == (status == 503)
    assert len(broker.received) == (status == 200)


def test_the_lane_setting_goes_into_the_context(
    settings: Settings, keys: dict[str, str], broker: StubBroker
) -> None:
    client = create_app(replace(settings, druid_lane="limited")).test_client()
    broker.on("POST", "/druid/v2/", Answer.json(DRUID_ROWS))
    response = client.post(URL, json=QUERY, headers={**_header(keys, "good_key"), "X-Request-Id": "req-3"})
    assert response.status_code == 200
    (sent,) = [request.json() for request in broker.received]
    assert sent["context"] == {
        "queryId": broker.query_ids()[0],
        "timeout": 2850,
        "skipEmptyBuckets": True,
        "lane": "limited",
    }


def test_query_body_is_exactly_the_translation(
    client: FlaskClient, broker: StubBroker, keys: dict[str, str]
) -> None:
    expected = json.loads(
        (Path(__file__).parent.parent / "golden/druid/seed_example_unique_visitors_helsinki.json").read_text()
    )["expected"]
    expected["context"] = {"queryId": "<the service's>", "timeout": 2850, "skipEmptyBuckets": True}
    seed = {
        **QUERY,
        "filters": [*QUERY["filters"], {"type": "selector", "dimension": "country", "value": "FI"}],
    }
    broker.on("POST", "/druid/v2/", Answer.json(DRUID_ROWS))
    response = client.post(URL, json=seed, headers={**_header(keys, "good_key"), "X-Request-Id": "req-1"})
    assert response.status_code == 200
    expected["context"]["queryId"] = broker.query_ids()[0]
    assert [request.json() for request in broker.received] == [expected]


@pytest.mark.parametrize(
    ("ready", "status", "body", "retry_after"),
    [
        (True, 200, {"status": "ready", "backend": "stub", "limits": "local", "access": "ok"}, None),
        (False, 503, {"detail": "The backend is not ready.", "code": "not_ready"}, "5"),
    ],
)
def test_readiness_follows_the_backend(
    tmp_path: Path, ready: bool, status: int, body: dict[str, str], retry_after: str | None
) -> None:
    response = make_web(tmp_path, StubBackend(is_ready=ready)).client.get("/readyz")
    assert (response.status_code, response.json) == (status, body)
    assert response.headers.get("Retry-After") == retry_after


def test_health_and_documents_answer_without_credentials(tmp_path: Path) -> None:
    client = make_web(tmp_path).client
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/openapi.json").json["openapi"] == "3.1.0"
    assert client.get("/metrics").status_code == 200


def test_an_unexpected_error_is_a_bare_500(tmp_path: Path) -> None:
    web = make_web(tmp_path, StubBackend(error=RuntimeError("secret internals")))
    response = web.client.post(url(), json=QUERY_UTC, headers=web.auth("a"))
    assert (response.status_code, response.json) == (
        500,
        {"detail": "Internal error.", "code": "internal_error"},
    )


def test_a_caller_hanging_up_cancels_only_its_own_query_whatever_request_id_it_shares(
    settings: Settings, broker: StubBroker, keys: dict[str, str]
) -> None:
    # Two organizations both send `X-Request-Id: dash-1`; the first hangs up mid-query.
    broker.on("POST", "/druid/v2/", replace(Answer.json(DRUID_ROWS), delay_secs=0.5))
    service = create_app(settings).extensions["reporting"]
    outcomes: dict[str, str] = {}
    records = {"gone": Record("dash-1", 0.0), "stays": Record("dash-1", 0.0)}

    def ask(who: str, organization: str, key: str, gone: bool) -> None:
        call = Call(
            organization,
            f"Token {keys[key]}",
            "dash-1",
            time.perf_counter(),
            body=lambda: json.dumps(QUERY).encode(),
            client_gone=lambda: gone,
        )
        try:
            service.visitor_sessions(call, records[who])
            outcomes[who] = "answered"
        except ClientDisconnected:
            outcomes[who] = "disconnected"

    threads = [
        threading.Thread(target=ask, args=("gone", ORG, "good", True)),
        threading.Thread(target=ask, args=("stays", OTHER_ORG, "other", False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcomes == {"gone": "disconnected", "stays": "answered"}
    gone_id, stays_id = records["gone"].backend_query_id, records["stays"].backend_query_id
    assert sorted(broker.query_ids()) == sorted([gone_id, stays_id]) and gone_id != stays_id
    broker.wait_for(f"DELETE /druid/v2/{gone_id}")
    assert [line for line in broker.lines() if line.startswith("DELETE")] == [f"DELETE /druid/v2/{gone_id}"]
