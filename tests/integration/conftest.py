"""The integration suite's data and services: generated sessions loaded with the real CLI into
the real local Druid and the embedded engine, each served under gunicorn."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from proxyctl.ingest.generator import generate, organization_ids
from tests.support.compare import HLL_ERRORS
from tests.support.served import Dataset, Service, start_service

SEED = 20190101
SESSIONS = 20_000
ORGS = 3
# The last organization gets no data at all: it must answer zeros, never others' rows.
ORG_WITHOUT_DATA = "6a0ee3f2-3c1d-4f0e-9a5b-000000000000"


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    path = tmp_path_factory.mktemp("data") / "sessions.ndjson"
    generate(path, sessions=SESSIONS, orgs=ORGS, seed=SEED)
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return Dataset(path, rows, (*organization_ids(ORGS, SEED), ORG_WITHOUT_DATA))


@pytest.fixture(scope="session")
def druid_service(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from start_service("druid", dataset, tmp_path_factory.mktemp("druid-service"))


@pytest.fixture(scope="session")
def embedded_service(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from start_service("embedded", dataset, tmp_path_factory.mktemp("embedded-service"))


def _pick(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for backend, errors in sorted(HLL_ERRORS.items()):
        if not errors:
            continue
        ordered = sorted(errors)
        terminalreporter.write_line(
            f"hyperUnique relative error on {backend} over {len(ordered)} values: "
            f"median {_pick(ordered, 0.5):.4%}, p95 {_pick(ordered, 0.95):.4%}, "
            f"p99 {_pick(ordered, 0.99):.4%}, max {ordered[-1]:.4%}"
        )
