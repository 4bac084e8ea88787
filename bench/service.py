"""The service (or any WSGI app) under gunicorn on a free loopback port, for one bench phase."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil  # type: ignore[import-untyped]
import requests

from proxy.access.store import AccessStore, AccessStoreError
from proxy.web.app import ROUTE

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Workers:
    """A gunicorn worker model: processes, threads each, and the worker class."""

    workers: int = 2
    threads: int = 4

    @property
    def worker_class(self) -> str:
        return "gthread" if self.threads > 1 else "sync"

    def __str__(self) -> str:
        return f"{self.workers}x{self.threads} {self.worker_class}"

    def args(self) -> list[str]:
        return [
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--worker-class",
            self.worker_class,
        ]


@dataclass(frozen=True)
class Running:
    """A started server: its base URL, the master's pid, and a key for the organization."""

    base_url: str
    pid: int
    token: str

    def url(self, organization: str) -> str:
        return self.base_url + ROUTE.replace("<organization_id>", organization)

    def worker_pids(self) -> list[int]:
        return [child.pid for child in psutil.Process(self.pid).children()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def grant(data_dir: Path, organization: str) -> str:
    """Register the organization (once) in the access store and create a key for it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = AccessStore(data_dir / "access.sqlite3")
    try:
        store.add_organization(organization, "bench")
    except AccessStoreError:
        pass  # registered by an earlier run
    return store.create_key([organization], "bench")


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], path: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited during start-up with {process.returncode}")
        try:
            requests.get(base_url + path, timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError("the server did not answer in 60 s")


@contextmanager
def gunicorn(
    app: str, env: dict[str, str], workers: Workers, log: Path, token: str = "", health: str = "/healthz"
) -> Iterator[Running]:
    """Serve `app` (a gunicorn app spec) until the block ends; stops only this process."""
    port = free_port()
    # The service runs as `reporting-proxy serve` runs it: with its gunicorn config module.
    config = ["--config", "python:proxy.gunicorn_conf"] if app.startswith("proxy.") else []
    command = [
        str(BIN / "gunicorn"),
        *config,
        "--bind",
        f"127.0.0.1:{port}",
        *workers.args(),
        "--backlog",
        "2048",
        app,
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=sink)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base_url, process, health)
        yield Running(base_url, process.pid, token)
    finally:
        process.terminate()
        process.wait(timeout=30)


class Client:
    """One keep-alive session posting pre-encoded bodies; raises on any non-200."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def post(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
        response = self.session.post(
            url, data=body, headers={"Content-Type": "application/json", **(headers or {})}, timeout=300
        )
        if response.status_code != 200:
            raise RuntimeError(f"POST {url}: HTTP {response.status_code}: {response.content[:300]!r}")
        return response.content

    def query(self, running: Running, organization: str, payload: object, explain: bool = False) -> bytes:
        url = running.url(organization) + ("?explain=true" if explain else "")
        return self.post(url, orjson.dumps(payload), {"Authorization": f"Token {running.token}"})
