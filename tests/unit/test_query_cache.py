"""Validated queries are cached by body: repeats skip validation, failures and big bodies never stick."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from proxy.query.plan import BackendRow, ResultPlan
from tests.unit.web import ORG, OTHER_ORG, QUERY, StubBackend, make_web, url


@dataclass
class RecordingBackend(StubBackend):
    """A stub backend that keeps every (organization, query) it was asked to run."""

    seen: list[tuple[str, Any]] = field(default_factory=list)

    def execute(self, plan: ResultPlan, organization_id: str, *args: Any) -> list[BackendRow]:
        self.seen.append((organization_id, plan.query))
        return []


def _post(web: Any, body: bytes, who: str = "both", org: str = ORG) -> Any:
    return web.client.post(url(org), data=body, headers={**web.auth(who), "Content-Type": "application/json"})


def test_a_repeated_body_is_validated_once_and_answers_the_same(tmp_path: Path) -> None:
    backend = RecordingBackend()
    web = make_web(tmp_path, backend)
    body = orjson.dumps(QUERY)
    first, second = _post(web, body), _post(web, body)
    assert first.status_code == second.status_code == 200
    assert first.json == second.json
    assert backend.seen[0][1] is backend.seen[1][1]


def test_the_cached_query_carries_no_organization(tmp_path: Path) -> None:
    backend = RecordingBackend()
    web = make_web(tmp_path, backend)
    body = orjson.dumps(QUERY)
    assert _post(web, body, org=ORG).status_code == 200
    assert _post(web, body, org=OTHER_ORG).status_code == 200
    # One validated query, each run under the organization of its own URL.
    assert [org for org, _ in backend.seen] == [ORG, OTHER_ORG]
    assert backend.seen[0][1] is backend.seen[1][1]


def test_an_invalid_body_is_refused_every_time(tmp_path: Path) -> None:
    web = make_web(tmp_path, RecordingBackend())
    body = orjson.dumps({**QUERY, "granularity": "fortnight"})
    for _ in range(2):
        response = _post(web, body)
        assert response.status_code == 400
        assert "granularity" in response.json["errors"]


def test_access_is_checked_even_for_a_cached_body(tmp_path: Path) -> None:
    web = make_web(tmp_path, RecordingBackend())
    body = orjson.dumps(QUERY)
    assert _post(web, body, who="a").status_code == 200
    assert _post(web, body, who="other").status_code == 403


def test_a_large_body_is_validated_afresh(tmp_path: Path) -> None:
    backend = RecordingBackend()
    web = make_web(tmp_path, backend)
    body = orjson.dumps(QUERY)[:-1] + b" " * 5000 + b"}"
    assert _post(web, body).status_code == _post(web, body).status_code == 200
    assert backend.seen[0][1] == backend.seen[1][1]
    assert backend.seen[0][1] is not backend.seen[1][1]
