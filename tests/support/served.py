"""The service as it is deployed: sessions loaded with the real CLI into a real engine, and the
service under gunicorn as its own process, driven over HTTP on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.front import gunicorn_master, serve_command
from tests.support.net import free_port

BIN = Path(sys.executable).parent
BROKER = os.environ.get("PROXY_IT_DRUID_BROKER_URL", "http://127.0.0.1:8082")
OVERLORD = os.environ.get("PROXY_IT_DRUID_OVERLORD_URL", "http://127.0.0.1:8081")
DATASOURCE = "visitor_sessions_it"
ROUTE = "/api/reporting/v1/orgs/{}/visitor_sessions"


@dataclass(frozen=True)
class Dataset:
    """Generated sessions on disk, their rows, and the organizations registered for them."""

    path: Path
    rows: list[dict[str, Any]]
    organizations: tuple[str, ...]


@dataclass(frozen=True)
class Service:
    """A running service: its URL, one API key per organization, and what it runs with."""

    backend: str
    base_url: str
    tokens: dict[str, str]
    data_dir: Path
    pid: int = 0  # gunicorn's master process
    env: Mapping[str, str] | None = None  # what the service and its CLI run with

    def post(
        self, organization: str, payload: Any, token_for: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """POST a query for `organization` with the key of `token_for` (default: its own)."""
        token = self.tokens[token_for or organization]
        return requests.post(
            self.base_url + ROUTE.format(organization),
            json=payload,
            headers={"Authorization": f"Token {token}"},
            timeout=60,
            **kwargs,
        )


def clean_env(**proxy_vars: str) -> dict[str, str]:
    """This environment without any PROXY_* variable, plus `proxy_vars` (name without prefix)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROXY_")}
    env.update({f"PROXY_{name.upper()}": value for name, value in proxy_vars.items()})
    return env


def cli(env: Mapping[str, str], *args: str, timeout: float = 900) -> str:
    """Run `reporting-proxy` with `env`; its stdout, or an assertion naming the failure."""
    done = subprocess.run(
        [str(BIN / "reporting-proxy"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"reporting-proxy {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    """Return once `/healthz` answers 200; an assertion if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{what}: gunicorn exited during start-up"
        try:
            if requests.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError(f"{what}: not healthy in {timeout:.0f} s")


def require_druid() -> None:
    """Fail (never skip) unless the local Druid broker is ready."""
    try:
        ready = requests.get(f"{BROKER}/druid/broker/v1/readiness", timeout=5).status_code == 200
    except requests.RequestException:
        ready = False
    # Never a skip: `make test` starts the local Druid, and CI must exercise it.
    assert ready, f"no ready Druid broker at {BROKER}: run `reporting-proxy druid up` (make test does)"


def _service_env(backend: str, data_dir: Path) -> dict[str, str]:
    druid = {"druid_broker_url": BROKER, "druid_overlord_url": OVERLORD, "druid_datasource": DATASOURCE}
    return clean_env(
        backend=backend,
        data_dir=str(data_dir),
        request_timeout_secs="60",
        **(druid if backend == "druid" else {}),
    )


def _register(env: Mapping[str, str], organizations: tuple[str, ...]) -> dict[str, str]:
    """Register each organization through the CLI; an API key for each."""
    tokens = {}
    for organization in organizations:
        cli(env, "orgs", "add", organization, "--name", f"org {organization[:8]}")
        tokens[organization] = cli(env, "tokens", "create", "--org", organization).strip().splitlines()[-1]
    return tokens


def _gunicorn(port: int) -> list[str]:
    return [
        str(BIN / "gunicorn"),
        *("--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4", "--worker-class", "gthread"),
        "--no-control-socket",  # gunicorn's default one is shared by every instance of the user
        "proxy.web.app:create_app()",
    ]


def start_service(
    backend: str,
    dataset: Dataset,
    data_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    front: bool = False,
) -> Iterator[Service]:
    """Load the dataset through the CLI, register orgs and keys, serve with gunicorn.

    `extra_env` (e.g. PROXY_JWT_*, another PROXY_DRUID_DATASOURCE) applies to the CLI and server.
    `front`: `reporting-proxy serve` as deployed (nginx in front; `pid` is still gunicorn's
    master); else gunicorn alone, so a test can tell which worker holds a client's TCP socket.
    """
    env = {**_service_env(backend, data_dir), **(extra_env or {})}
    if backend == "druid":
        require_druid()
    cli(env, "load", str(dataset.path))
    tokens = _register(env, dataset.organizations)
    port = free_port()
    with (data_dir / "gunicorn.log").open("wb") as log:
        command = serve_command(port) if front else _gunicorn(port)
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process, 30, f"{backend} service")
        master = gunicorn_master(data_dir) if front else process.pid
        yield Service(backend, base_url, tokens, data_dir, master, env)
    finally:
        process.terminate()
        process.wait(timeout=30)
