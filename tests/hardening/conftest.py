"""Fixtures of the contract tests: the embedded service open to one tenant's unlimited load."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.served import Service, start_service
from tests.support.tenants import NO_RATE_LIMITS, Tenants


@pytest.fixture(scope="session")
def open_service(tenants: Tenants, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The embedded service with API keys only, rate limits, the invalid budget and concurrency limits off."""
    data_dir = tmp_path_factory.mktemp("contract")
    yield from start_service("embedded", tenants.dataset, data_dir, NO_RATE_LIMITS)
