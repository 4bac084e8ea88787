"""Fixtures of the browser tests: the demo's data (small), the service behind its front server
with one second origin allowed, that origin's page, and one headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from proxyctl.demo import ORGS, SEED
from proxyctl.ingest.generator import generate
from tests.support.browser import chromium, serve_frontend
from tests.support.served import Dataset, Service, start_service

SESSIONS = 20_000
# Low enough for a page to reach in a few requests; the console's tests stay well under it.
RATE_LIMIT_PER_PRINCIPAL = 20


@pytest.fixture(scope="session")
def frontend_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The second origin: http://127.0.0.1:<port> is allowed, http://localhost:<port> is not."""
    yield from serve_frontend(tmp_path_factory.mktemp("frontend"))


@pytest.fixture(scope="session")
def console_service(frontend_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The demo's data on the embedded engine, served as `reporting-proxy serve` runs (nginx in front)."""
    data_dir = tmp_path_factory.mktemp("browser-service")
    sample = data_dir / "sessions.ndjson"
    organizations = generate(sample, SESSIONS, ORGS, SEED)
    env = {
        "PROXY_CORS_ORIGINS": f"http://127.0.0.1:{frontend_port}",
        "PROXY_RATE_LIMIT_PER_PRINCIPAL_PER_MIN": str(RATE_LIMIT_PER_PRINCIPAL),
    }
    yield from start_service("embedded", Dataset(sample, [], organizations), data_dir, env, front=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where screenshots go: var/browser, next to the other run output, never committed."""
    path = Path(__file__).resolve().parents[2] / "var" / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path
