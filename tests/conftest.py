"""Fixtures more than one suite uses: the hardening tenants and their services (tests/hardening
and tests/soak). Each is session-scoped and started only when a selected test asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.served import Service, start_service
from tests.support.tenants import JwtKeys, Tenants, druid_env, embedded_env, generate_tenants, new_jwt_keys


@pytest.fixture(scope="session")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Tenants:
    return generate_tenants(tmp_path_factory.mktemp("hardening-data") / "sessions.ndjson")


@pytest.fixture(scope="session")
def jwt_keys() -> JwtKeys:
    return new_jwt_keys()


@pytest.fixture(scope="session")
def embedded_hardened(
    tenants: Tenants, jwt_keys: JwtKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The embedded service on the tenants' data, with RS256 bearer tokens on."""
    data_dir = tmp_path_factory.mktemp("hardening-embedded")
    yield from start_service("embedded", tenants.dataset, data_dir, embedded_env(data_dir, jwt_keys))


@pytest.fixture(scope="session")
def embedded_fronted(
    tenants: Tenants, jwt_keys: JwtKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The same as `embedded_hardened`, served as `reporting-proxy serve` runs: nginx in front."""
    data_dir = tmp_path_factory.mktemp("hardening-fronted")
    yield from start_service(
        "embedded", tenants.dataset, data_dir, embedded_env(data_dir, jwt_keys), front=True
    )


@pytest.fixture(scope="session")
def druid_hardened(tenants: Tenants, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The Druid service on the tenants' data, in a datasource of its own."""
    data_dir = tmp_path_factory.mktemp("hardening-druid")
    yield from start_service("druid", tenants.dataset, data_dir, druid_env())
