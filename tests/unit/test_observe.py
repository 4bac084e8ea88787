"""Metrics and JSON log lines through the Flask test client: what each request records, and
that no credential ever reaches the log."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from proxy.errors import BackendTimeout
from tests.support.ids import ORG, OTHER_ORG, UNKNOWN_ORG
from tests.unit.web import JWT_SECRET, QUERY, ROUTE, StubBackend, Web, make_web, url

Sample = tuple[str, dict[str, str]]


def _value(sample: Sample) -> float:
    return REGISTRY.get_sample_value(*sample) or 0.0


def _requests(route: str, method: str, status: str) -> Sample:
    return "reporting_proxy_requests_total", {"route": route, "method": method, "status": status}


def _post(web: Web, kind: str) -> Any:
    """One request of each kind the tables below name."""
    table: dict[str, dict[str, Any]] = {
        "ok": {"path": url(), "json": QUERY, "headers": web.auth("a")},
        "ok_csv": {"path": url(), "json": QUERY, "headers": {**web.auth("a"), "Accept": "text/csv"}},
        "ok_jwt": {"path": url(), "json": QUERY, "headers": {**web.auth("jwt"), "X-Request-Id": "req-jwt"}},
        "explain": {"path": url(suffix="?explain=true"), "json": QUERY, "headers": web.auth("a")},
        "invalid": {"path": url(), "json": {"granularity": "day"}, "headers": web.auth("a")},
        "no_credentials": {"path": url(), "json": QUERY},
        "forbidden": {"path": url(OTHER_ORG), "json": QUERY, "headers": web.auth("a")},
        "unknown_org": {"path": url(UNKNOWN_ORG), "json": QUERY, "headers": web.auth("a")},
        "unknown_path": {"path": "/nowhere", "json": QUERY},
        "odd_method": {"path": url(), "method": "BREW"},
    }
    spec = dict(table[kind])
    method = spec.pop("method", "POST")
    return web.client.open(spec.pop("path"), method=method, **spec)


@pytest.mark.parametrize(
    ("kind", "sample"),
    [
        ("ok", _requests(ROUTE, "POST", "200")),
        ("invalid", _requests(ROUTE, "POST", "400")),
        ("invalid", ("reporting_proxy_rejections_total", {"code": "invalid_request"})),
        ("no_credentials", ("reporting_proxy_rejections_total", {"code": "not_authenticated"})),
        ("forbidden", ("reporting_proxy_rejections_total", {"code": "forbidden"})),
        ("unknown_org", ("reporting_proxy_rejections_total", {"code": "organization_not_found"})),
        ("unknown_path", _requests("unmatched", "POST", "404")),
        ("unknown_path", ("reporting_proxy_rejections_total", {"code": "not_found"})),
        ("odd_method", _requests("unmatched", "other", "405")),
        ("ok", ("reporting_proxy_request_duration_seconds_count", {"route": ROUTE, "status": "200"})),
        ("ok", ("reporting_proxy_backend_duration_seconds_count", {"backend": "stub"})),
    ],
)
def test_each_request_counts_once(tmp_path: Path, kind: str, sample: Sample) -> None:
    web = make_web(tmp_path)
    before = _value(sample)
    _post(web, kind)
    assert _value(sample) - before == 1


@pytest.mark.parametrize(
    ("kind", "sample"),
    [
        ("invalid", ("reporting_proxy_backend_duration_seconds_count", {"backend": "stub"})),
        ("explain", ("reporting_proxy_backend_duration_seconds_count", {"backend": "stub"})),
        ("ok", ("reporting_proxy_rejections_total", {"code": "invalid_request"})),
    ],
)
def test_what_does_not_count(tmp_path: Path, kind: str, sample: Sample) -> None:
    web = make_web(tmp_path)
    before = _value(sample)
    _post(web, kind)
    assert _value(sample) == before


def test_rate_limited_and_timed_out_queries_are_counted(tmp_path: Path) -> None:
    web = make_web(tmp_path, StubBackend(error=BackendTimeout("slow")), rate_limit_per_org_per_min=1)
    samples = [
        ("reporting_proxy_backend_timeouts_total", {"backend": "stub"}),
        ("reporting_proxy_rejections_total", {"code": "too_many_requests"}),
        _requests(ROUTE, "POST", "504"),
    ]
    before = [_value(sample) for sample in samples]
    statuses = [_post(web, "ok").status_code for _ in range(2)]
    assert statuses == [504, 429]
    assert [_value(sample) - start for sample, start in zip(samples, before)] == [1, 1, 1]


def test_in_flight_gauge_counts_a_running_query(tmp_path: Path) -> None:
    backend = StubBackend(gate=threading.Event())
    web = make_web(tmp_path, backend)
    gauge: Sample = ("reporting_proxy_queries_in_flight", {"backend": "stub"})
    idle = _value(gauge)
    thread = threading.Thread(target=_post, args=(web, "ok"))
    thread.start()
    assert backend.entered.wait(10)
    running = _value(gauge)
    backend.gate.set()  # type: ignore[union-attr]
    thread.join(10)
    assert (running - idle, _value(gauge) - idle) == (1, 0)


def test_metrics_endpoint_is_prometheus_text(tmp_path: Path) -> None:
    web = make_web(tmp_path)
    _post(web, "ok")
    response = web.client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    types = dict(line.split()[2:4] for line in response.text.splitlines() if line.startswith("# TYPE"))
    assert {
        "reporting_proxy_requests_total": "counter",
        "reporting_proxy_request_duration_seconds": "histogram",
        "reporting_proxy_backend_duration_seconds": "histogram",
        "reporting_proxy_rejections_total": "counter",
        "reporting_proxy_backend_timeouts_total": "counter",
        "reporting_proxy_queries_in_flight": "gauge",
    }.items() <= types.items()


# ---- log lines -------------------------------------------------------------------------


def _lines(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def _access_line(captured: str) -> dict[str, Any]:
    lines = [line for line in _lines(captured) if line["logger"] == "proxy.access_log"]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            "ok",
            {
                "method": "POST",
                "route": ROUTE,
                "organization": ORG,
                "principal": "key:<a>",
                "status": 200,
                "error_code": None,
                "backend": "stub",
                "druid_query_id": None,
                "representation": "application/json",
            },
        ),
        ("ok_csv", {"status": 200, "representation": "text/csv"}),
        ("ok_jwt", {"request_id": "req-jwt", "principal": "jwt:alice", "status": 200}),
        ("explain", {"status": 200, "backend": "stub", "backend_ms": None, "representation": None}),
        (
            "invalid",
            {"status": 400, "error_code": "invalid_request", "principal": "key:<a>", "backend": None},
        ),
        (
            "no_credentials",
            {"status": 401, "error_code": "not_authenticated", "principal": None, "organization": ORG},
        ),
        ("forbidden", {"status": 403, "error_code": "forbidden", "organization": OTHER_ORG}),
        (
            "unknown_path",
            {
                "status": 404,
                "error_code": "not_found",
                "route": "unmatched",
                "organization": None,
                "representation": None,
            },
        ),
    ],
)
def test_one_access_line_per_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, expected: dict[str, Any]
) -> None:
    web = make_web(tmp_path)
    capsys.readouterr()
    response = _post(web, kind)
    line = _access_line(capsys.readouterr().err)
    key_id = "key:" + web.keys["a"].split("_")[1]
    assert {name: line[name] for name in expected} == {
        k: v if v != "key:<a>" else key_id for k, v in expected.items()
    }
    assert line["request_id"] == response.headers["X-Request-Id"]
    assert line["event"] == "request" and line["level"] == "info"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0


def test_backend_time_is_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    web = make_web(tmp_path)
    capsys.readouterr()
    _post(web, "ok")
    line = _access_line(capsys.readouterr().err)
    assert 0 <= line["backend_ms"] <= line["duration_ms"]


def test_druid_query_id_is_the_services_own_and_logged_beside_the_request_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxy.backends.druid.backend import DruidBackend
    from tests.unit.web import settings_for

    backend = DruidBackend(settings_for(tmp_path, backend="druid", druid_broker_url="http://druid.test:8082"))
    web = make_web(tmp_path, backend)
    capsys.readouterr()
    response = web.client.post(
        url(suffix="?explain=true"), json=QUERY, headers={**web.auth("a"), "X-Request-Id": "req-7"}
    )
    line = _access_line(capsys.readouterr().err)
    query_id = response.json["query"]["context"]["queryId"]
    assert re.fullmatch("[0-9a-f]{32}", query_id)
    assert (line["backend"], line["request_id"], line["druid_query_id"]) == ("druid", "req-7", query_id)


@pytest.mark.parametrize(
    ("kind", "audit"),
    [
        ("ok", {"principal": "key:<a>", "organization": ORG, "explain": False}),
        ("explain", {"principal": "key:<a>", "organization": ORG, "explain": True}),
        (
            "ok_jwt",
            {"principal": "jwt:alice", "organization": ORG, "explain": False, "request_id": "req-jwt"},
        ),
        ("invalid", {"principal": "key:<a>", "organization": ORG, "explain": False}),
        ("no_credentials", None),
        ("forbidden", None),
        ("unknown_org", None),
    ],
)
def test_audit_event_for_every_authorized_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, audit: dict[str, Any] | None
) -> None:
    web = make_web(tmp_path)
    capsys.readouterr()
    _post(web, kind)
    events = [line for line in _lines(capsys.readouterr().err) if line["logger"] == "proxy.audit"]
    key_id = "key:" + web.keys["a"].split("_")[1]
    expected = [{k: key_id if v == "key:<a>" else v for k, v in audit.items()}] if audit else []
    assert [{name: event[name] for name in audit or {}} for event in events] == expected
    assert all(event["event"] == "query_authorized" for event in events)


def _secrets(web: Web) -> list[str]:
    token = web.auth("jwt")["Authorization"].removeprefix("Bearer ")
    key = web.keys["a"]
    return [key, key.split("_", 2)[2], token, token.split(".")[2], token.split(".")[1], JWT_SECRET]


def test_credentials_never_reach_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    web = make_web(tmp_path, rate_limit_per_principal_per_min=2)
    secrets = _secrets(web)
    key, token = secrets[0], secrets[2]
    headers = [
        {"Authorization": f"Token {key}"},
        {"Authorization": f"Bearer {token}"},
        {"Authorization": f"Token {key}x"},  # malformed key
        {"Authorization": f"Bearer {token[:-3]}abc"},  # forged signature
        {"Authorization": f"Basic {key}"},  # wrong scheme
        {"Authorization": f"Token {key}", "X-Request-Id": key},  # a key smuggled as request id
    ]
    capsys.readouterr()
    for header in headers:
        # Each authorized request spends one of the key's two a minute: the invalid one first.
        for path, body in [
            (url(), {"bad": key}),
            (url(), QUERY),
            (url(suffix="?explain=true"), QUERY),
            (url(OTHER_ORG), QUERY),
        ]:
            web.client.post(path, json=body, headers=header)
        web.client.get(url(suffix="/meta"), headers=header)
        web.client.get(f"/metrics?token={key[:8]}", headers=header)
    captured = capsys.readouterr()
    output = captured.err + captured.out
    lines = _lines(captured.err)
    assert len([line for line in lines if line["logger"] == "proxy.access_log"]) == 6 * 6
    assert {line["status"] for line in lines if "status" in line} >= {200, 400, 401, 403, 429}
    assert [secret for secret in secrets if secret in output] == []
    assert "Authorization" not in output
