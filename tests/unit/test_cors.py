"""CORS for the API routes (proxy/web/cors.py) and the console's files (proxy/web/console.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import TestResponse

from proxy.errors import BackendError, BackendTimeout
from proxy.settings import SettingsError, load_settings
from proxy.web.cors import ALLOWED_HEADERS, EXPOSED_HEADERS, MAX_AGE_SECS
from tests.support.ids import OTHER_ORG
from tests.unit.web import QUERY, StubBackend, Web, make_web, url

APP = "http://app.example:3000"
STRANGER = "http://evil.example"
SECOND = "https://dashboards.example"


def web(tmp_path: Path, backend: Any = None, **overrides: Any) -> Web:
    return make_web(tmp_path, backend, cors_origins=(APP, SECOND), **overrides)


def preflight(client: Web, path: str, origin: str, method: str = "POST") -> TestResponse:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return client.client.options(path, headers=headers)


def cors_headers(response: TestResponse) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("Access-Control-")}


@pytest.mark.parametrize(
    ("origin", "path", "method", "allowed_methods"),
    [
        (APP, url(), "POST", "POST"),
        (SECOND, url(), "POST", "POST"),
        (APP, url(suffix="/meta"), "GET", "GET"),
    ],
)
def test_a_preflight_from_a_listed_origin_is_204_with_that_origin(
    tmp_path: Path, origin: str, path: str, method: str, allowed_methods: str
) -> None:
    response = preflight(web(tmp_path), path, origin, method)
    assert response.status_code == 204
    assert response.data == b""
    assert cors_headers(response) == {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": allowed_methods,
        "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
        "Access-Control-Max-Age": str(MAX_AGE_SECS),
    }
    assert "Origin" in response.vary


@pytest.mark.parametrize(
    ("origins", "origin"),
    [
        ((APP,), STRANGER),
        ((APP,), APP + "/"),  # an origin is compared exactly, never as a prefix or pattern
        ((APP,), APP.upper()),
        ((APP,), "null"),  # sandboxed frames and file:// pages
        ((), APP),  # none listed: the default
    ],
)
def test_a_preflight_from_any_other_origin_is_a_json_403_without_cors_headers(
    tmp_path: Path, origins: tuple[str, ...], origin: str
) -> None:
    response = preflight(make_web(tmp_path, cors_origins=origins), url(), origin)
    assert response.status_code == 403
    assert response.json == {
        "detail": "This origin may not call the API from a browser.",
        "code": "origin_not_allowed",
    }
    assert cors_headers(response) == {}
    assert "Origin" in response.vary


@pytest.mark.parametrize(
    ("headers", "path", "status", "code"),
    [
        ({"Origin": APP, "Access-Control-Request-Method": "DELETE"}, url(), 405, "method_not_allowed"),
        ({"Origin": APP}, url(), 405, "method_not_allowed"),  # no method asked for: no preflight
        ({"Access-Control-Request-Method": "POST"}, url(), 405, "method_not_allowed"),
        ({"Origin": APP, "Access-Control-Request-Method": "GET"}, "/api/nothing-here", 404, "not_found"),
    ],
)
def test_options_that_are_no_preflight_of_a_route_are_routed_as_usual(
    tmp_path: Path, headers: dict[str, str], path: str, status: int, code: str
) -> None:
    response = web(tmp_path).client.options(path, headers=headers)
    assert (response.status_code, response.json["code"]) == (status, code)


@pytest.mark.parametrize("origin", [APP, SECOND])
def test_an_answer_to_a_listed_origin_names_it_and_exposes_the_headers_a_frontend_reads(
    tmp_path: Path, origin: str
) -> None:
    client = web(tmp_path)
    response = client.client.post(url(), json=QUERY, headers={**client.auth("a"), "Origin": origin})
    assert response.status_code == 200
    assert cors_headers(response) == {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": ", ".join(EXPOSED_HEADERS),
    }
    assert "Origin" in response.vary


@pytest.mark.parametrize("headers", [{"Origin": STRANGER}, {}])
def test_an_answer_to_another_origin_or_none_carries_no_cors_header_but_varies(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    client = web(tmp_path)
    response = client.client.post(url(), json=QUERY, headers={**client.auth("a"), **headers})
    assert response.status_code == 200
    assert cors_headers(response) == {}
    assert "Origin" in response.vary


def _unauthenticated(client: Web) -> TestResponse:
    return client.client.post(url(), json=QUERY, headers={"Origin": APP})


def _forbidden(client: Web) -> TestResponse:
    return client.client.post(url(OTHER_ORG), json=QUERY, headers={**client.auth("a"), "Origin": APP})


def _invalid(client: Web) -> TestResponse:
    return client.client.post(url(), json={"granularity": "day"}, headers={**client.auth("a"), "Origin": APP})


def _rate_limited(client: Web) -> TestResponse:
    for _ in range(2):
        response = client.client.post(url(), json=QUERY, headers={**client.auth("a"), "Origin": APP})
    return response


def _backend_failed(client: Web) -> TestResponse:
    return client.client.post(url(), json=QUERY, headers={**client.auth("a"), "Origin": APP})


@pytest.mark.parametrize(
    ("ask", "backend", "overrides", "status", "code"),
    [
        (_unauthenticated, None, {}, 401, "not_authenticated"),
        (_forbidden, None, {}, 403, "forbidden"),
        (_invalid, None, {}, 400, "invalid_request"),
        (_rate_limited, None, {"rate_limit_per_principal_per_min": 1}, 429, "too_many_requests"),
        (_backend_failed, StubBackend(error=BackendError("x")), {}, 502, "backend_error"),
        (_backend_failed, StubBackend(error=BackendTimeout("x")), {}, 504, "backend_timeout"),
        (_backend_failed, StubBackend(error=RuntimeError("x")), {}, 500, "internal_error"),
    ],
)
def test_error_answers_carry_the_cors_headers_so_the_page_can_read_them(
    tmp_path: Path, ask: Any, backend: Any, overrides: dict[str, Any], status: int, code: str
) -> None:
    response = ask(web(tmp_path, backend, **overrides))
    assert (response.status_code, response.json["code"]) == (status, code)
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Expose-Headers"] == ", ".join(EXPOSED_HEADERS)


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/console"])
def test_routes_outside_the_api_get_no_cors_headers(tmp_path: Path, path: str) -> None:
    response = web(tmp_path).client.get(path, headers={"Origin": APP})
    assert response.status_code == 200
    assert cors_headers(response) == {}


@pytest.mark.parametrize(
    ("raw", "origins"),
    [
        ("", ()),
        ("http://app.example:3000", ("http://app.example:3000",)),
        ("https://A.example, http://127.0.0.1:8000", ("https://a.example", "http://127.0.0.1:8000")),
        ("https://a.example http://[::1]:8000", ("https://a.example", "http://[::1]:8000")),
    ],
)
def test_cors_origins_are_read_as_a_list_of_exact_origins(raw: str, origins: tuple[str, ...]) -> None:
    assert load_settings({"PROXY_CORS_ORIGINS": raw}).cors_origins == origins


@pytest.mark.parametrize(
    "raw", ["*", "https://*.example", "https://a.example/", "https://a.example/app", "a.example", "null"]
)
def test_anything_but_an_exact_origin_is_refused_at_start(raw: str) -> None:
    with pytest.raises(SettingsError, match="PROXY_CORS_ORIGINS"):
        load_settings({"PROXY_CORS_ORIGINS": raw})


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/console", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/vendor/chart.umd.min.js", "text/javascript"),
    ],
)
def test_the_console_files_are_served_with_a_policy_that_keeps_the_page_on_this_host(
    tmp_path: Path, path: str, content_type: str
) -> None:
    response = web(tmp_path).client.get(path)
    assert response.status_code == 200
    assert response.mimetype == content_type
    assert "connect-src 'self'" in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("console", "path", "status"),
    [
        (True, "/console/../settings.py", 404),
        (True, "/console/missing.js", 404),
        (False, "/console", 404),
        (False, "/console/console.js", 404),
    ],
)
def test_only_the_console_files_are_served_and_none_when_it_is_off(
    tmp_path: Path, console: bool, path: str, status: int
) -> None:
    assert web(tmp_path, console=console).client.get(path).status_code == status


@pytest.mark.parametrize(("raw", "console"), [("on", True), ("off", False), ("OFF", False), ("1", True)])
def test_the_console_setting_is_a_switch(raw: str, console: bool) -> None:
    assert load_settings({"PROXY_CONSOLE": raw}).console is console
