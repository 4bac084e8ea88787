"""Conditional requests over HTTP: ETag, Cache-Control and X-Cache; 304 only for an authorized caller
of the same organization; explanations untouched by the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.backends.embedded.backend import EmbeddedBackend
from tests.support.ids import ORG, OTHER_ORG
from tests.unit.web import QUERY, Web, make_web, settings_for, url

MIB = 1024 * 1024


@pytest.fixture
def web(tmp_path: Path) -> Web:
    backend = EmbeddedBackend(settings_for(tmp_path, cache_max_bytes=MIB))
    return make_web(tmp_path, backend, cache_max_bytes=MIB)


def test_a_repeat_is_a_hit_and_a_matching_etag_a_304(web: Web) -> None:
    first = web.client.post(url(), json=QUERY, headers=web.auth("a"))
    second = web.client.post(url(), json=QUERY, headers=web.auth("b"))
    tag = first.headers["ETag"]
    conditional = web.client.post(url(), json=QUERY, headers={**web.auth("a"), "If-None-Match": tag})
    assert [r.status_code for r in (first, second, conditional)] == [200, 200, 304]
    assert [r.headers["X-Cache"] for r in (first, second, conditional)] == ["miss", "hit", "revalidated"]
    assert second.get_data() == first.get_data() and conditional.get_data() == b""
    assert {r.headers["Cache-Control"] for r in (first, second, conditional)} == {"private, no-cache"}
    assert conditional.headers["ETag"] == tag


@pytest.mark.parametrize(
    ("who", "org", "status"),
    [
        (None, ORG, 401),
        ("other", ORG, 403),
        ("both", OTHER_ORG, 200),
    ],
)
def test_an_etag_is_no_key_to_another_caller_or_organization(
    web: Web, who: str | None, org: str, status: int
) -> None:
    tag = web.client.post(url(), json=QUERY, headers=web.auth("a")).headers["ETag"]
    headers = {"If-None-Match": tag, **(web.auth(who) if who else {})}
    response = web.client.post(url(org), json=QUERY, headers=headers)
    assert response.status_code == status
    assert response.headers.get("ETag") != tag


def test_explain_is_not_cached(web: Web) -> None:
    response = web.client.post(url(suffix="?explain=true"), json=QUERY, headers=web.auth("a"))
    assert response.status_code == 200
    assert ("ETag" in response.headers, "X-Cache" in response.headers) == (False, False)
