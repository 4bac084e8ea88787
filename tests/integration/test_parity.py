"""Parity: the same query set through the HTTP API of both engines, loaded from the same file.
Counts, averages, groups and order identical; Druid's estimate within tolerance of the exact
embedded count (the observed error distribution is printed at the end of the run)."""

from __future__ import annotations

import pytest

from tests.support.compare import HLL_ERRORS, assert_same
from tests.support.queries import QUERIES
from tests.support.served import Dataset, Service

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_druid_matches_embedded(
    druid_service: Service, embedded_service: Service, dataset: Dataset, name: str
) -> None:
    organization = dataset.organizations[0]
    druid = druid_service.post(organization, QUERIES[name])
    embedded = embedded_service.post(organization, QUERIES[name])
    assert (druid.status_code, embedded.status_code) == (200, 200)
    assert_same("druid", druid.json(), embedded.json(), HLL_ERRORS.setdefault("druid vs embedded", []))
