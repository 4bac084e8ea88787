"""The issue 15 request keys (totals, compare, offset) through gunicorn on both engines: every
answer equals the exact oracle (Druid's unique counts within the HLL tolerance), and paging a
top list with offset until it ends gives back the unpaged list."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.compare import HLL_ERRORS, assert_same
from tests.support.oracle import evaluate
from tests.support.queries import ADDITION_QUERIES, PAGED_TOP_LIST
from tests.support.served import Dataset, Service

pytestmark = pytest.mark.integration
BACKENDS = ["druid", "embedded"]
PAGE = 40


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest) -> Service:
    return request.getfixturevalue(f"{request.param}_service")


def _answer(service: Service, organization: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = service.post(organization, payload)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.parametrize("organization_index", [0, 3], ids=["org_a", "org_without_data"])
@pytest.mark.parametrize("name", sorted(ADDITION_QUERIES))
def test_answer_equals_oracle(service: Service, dataset: Dataset, name: str, organization_index: int) -> None:
    organization = dataset.organizations[organization_index]
    payload = ADDITION_QUERIES[name]
    expected = evaluate(dataset.rows, organization, payload)
    actual = _answer(service, organization, payload)
    assert_same(service.backend, actual, expected, HLL_ERRORS.setdefault(service.backend, []))


def _pages(service: Service, organization: str) -> list[list[Any]]:
    pages: list[list[Any]] = []
    while not pages or len(pages[-1]) == PAGE:
        payload = {**PAGED_TOP_LIST, "limit": PAGE, "offset": PAGE * len(pages)}
        pages.append(_answer(service, organization, payload)["data"])
    return pages


def test_pages_through_a_top_list_until_it_ends(service: Service, dataset: Dataset) -> None:
    organization = dataset.organizations[0]
    unpaged = _answer(service, organization, {**PAGED_TOP_LIST, "limit": 10_000})["data"]
    pages = _pages(service, organization)
    assert len(pages) > 3, "the list should take several pages"
    assert [row for page in pages for row in page] == unpaged
    expected = evaluate(dataset.rows, organization, {**PAGED_TOP_LIST, "limit": 10_000})
    assert_same(service.backend, {"fields": expected["fields"], "data": unpaged}, expected, [])


def test_requests_without_the_new_keys_answer_without_their_parts(service: Service, dataset: Dataset) -> None:
    payload = {
        key: value for key, value in ADDITION_QUERIES["top_countries_given_interval_with_totals"].items()
    }
    for key in ("compare", "totals"):
        payload.pop(key)
    assert set(_answer(service, dataset.organizations[0], payload)) == {"fields", "data"}
