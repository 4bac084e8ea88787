"""Real parts only: generated sessions loaded with the real CLI into a real engine, and the
service run under gunicorn as its own process, driven over HTTP on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from proxyctl.ingest.generator import generate, organization_ids

SEED = 20190101
SESSIONS = 20_000
ORGS = 3
BIN = Path(sys.executable).parent
BROKER = os.environ.get("PROXY_IT_DRUID_BROKER_URL", "http://127.0.0.1:8082")
OVERLORD = os.environ.get("PROXY_IT_DRUID_OVERLORD_URL", "http://127.0.0.1:8081")
DATASOURCE = "visitor_sessions_it"


@dataclass(frozen=True)
class Dataset:
    path: Path
    rows: list[dict[str, Any]]
    organizations: tuple[str, ...]


@dataclass(frozen=True)
class Service:
    backend: str
    base_url: str
    tokens: dict[str, str]
    data_dir: Path
    pid: int = 0  # gunicorn's master process
    env: Mapping[str, str] | None = None  # what the service and its CLI run with

    def post(
        self, organization: str, payload: Any, token_for: str | None = None, **kwargs: Any
    ) -> requests.Response:
        token = self.tokens[token_for or organization]
        return requests.post(
            f"{self.base_url}/api/reporting/v1/orgs/{organization}/visitor_sessions",
            json=payload,
            headers={"Authorization": f"Token {token}"},
            timeout=60,
            **kwargs,
        )


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    path = tmp_path_factory.mktemp("data") / "sessions.ndjson"
    generate(path, sessions=SESSIONS, orgs=ORGS, seed=SEED)
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    # The last organization gets no data at all: it must answer zeros, never others' rows.
    return Dataset(path, rows, (*organization_ids(ORGS, SEED), "6a0ee3f2-3c1d-4f0e-9a5b-000000000000"))


def _env(backend: str, data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROXY_")}
    env.update(PROXY_BACKEND=backend, PROXY_DATA_DIR=str(data_dir), PROXY_REQUEST_TIMEOUT_SECS="60")
    if backend == "druid":
        env.update(
            PROXY_DRUID_BROKER_URL=BROKER,
            PROXY_DRUID_OVERLORD_URL=OVERLORD,
            PROXY_DRUID_DATASOURCE=DATASOURCE,
        )
    return env


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "reporting-proxy"), *args], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"reporting-proxy {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "gunicorn exited during start-up"
        try:
            if requests.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError("the service did not become healthy in 30 s")


def _require_druid() -> None:
    try:
        ready = requests.get(f"{BROKER}/druid/broker/v1/readiness", timeout=5).status_code == 200
    except requests.RequestException:
        ready = False
    # Never a skip: `make test` starts the local Druid, and CI must exercise it.
    assert ready, f"no ready Druid broker at {BROKER}: run `reporting-proxy druid up` (make test does)"


def start_service(
    backend: str, dataset: Dataset, data_dir: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[Service]:
    """Load the dataset through the CLI, register orgs and keys, serve with gunicorn.

    `extra_env` (e.g. PROXY_JWT_*, another PROXY_DRUID_DATASOURCE) applies to the CLI and server.
    """
    env = {**_env(backend, data_dir), **(extra_env or {})}
    if backend == "druid":
        _require_druid()
    _cli(env, "load", str(dataset.path))
    tokens = {}
    for organization in dataset.organizations:
        _cli(env, "orgs", "add", organization, "--name", f"org {organization[:8]}")
        tokens[organization] = _cli(env, "tokens", "create", "--org", organization).strip().splitlines()[-1]
    port = _free_port()
    command = [
        str(BIN / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--threads",
        "4",
        "--worker-class",
        "gthread",
        "proxy.web.app:create_app()",
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=(data_dir / "gunicorn.log").open("wb")
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base_url, process)
        yield Service(backend, base_url, tokens, data_dir, process.pid, env)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def druid_service(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from start_service("druid", dataset, tmp_path_factory.mktemp("druid-service"))


@pytest.fixture(scope="session")
def embedded_service(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from start_service("embedded", dataset, tmp_path_factory.mktemp("embedded-service"))


# Relative errors of every hyperUnique value checked against the exact oracle, per backend.
HLL_ERRORS: dict[str, list[float]] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for backend, errors in sorted(HLL_ERRORS.items()):
        if not errors:
            continue
        ordered = sorted(errors)

        def pick(q: float, ordered: list[float] = ordered) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        terminalreporter.write_line(
            f"hyperUnique relative error on {backend} over {len(ordered)} values: "
            f"median {pick(0.5):.4%}, p95 {pick(0.95):.4%}, p99 {pick(0.99):.4%}, max {ordered[-1]:.4%}"
        )
