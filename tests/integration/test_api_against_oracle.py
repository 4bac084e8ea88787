"""Every query of the broad set, for every organization, on every backend, through gunicorn:
the answer equals the exact oracle computed from the same NDJSON."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.compare import HLL_ERRORS, assert_same
from tests.support.oracle import evaluate
from tests.support.queries import QUERIES
from tests.support.served import Dataset, Service

pytestmark = pytest.mark.integration
BACKENDS = ["druid", "embedded"]


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest) -> Service:
    return request.getfixturevalue(f"{request.param}_service")


@pytest.mark.parametrize("organization_index", [0, 1, 3], ids=["org_a", "org_b", "org_without_data"])
@pytest.mark.parametrize("name", sorted(QUERIES))
def test_answer_equals_oracle(service: Service, dataset: Dataset, name: str, organization_index: int) -> None:
    organization = dataset.organizations[organization_index]
    payload: dict[str, Any] = QUERIES[name]
    response = service.post(organization, payload)
    assert response.status_code == 200, response.text
    expected = evaluate(dataset.rows, organization, payload)
    assert_same(service.backend, response.json(), expected, HLL_ERRORS.setdefault(service.backend, []))


def test_org_key_cannot_read_another_org(service: Service, dataset: Dataset) -> None:
    first, second = dataset.organizations[:2]
    response = service.post(second, QUERIES["all_year"], token_for=first)
    assert response.status_code == 403


def test_seed_example_has_helsinki_visitors(service: Service, dataset: Dataset) -> None:
    response = service.post(dataset.organizations[0], QUERIES["seed_example"])
    [[timestamp, visitors]] = response.json()["data"]
    assert timestamp == "2019-01-01T00:00:00.000+02:00"
    assert visitors > 50
