"""Real parts for the soak runs: a second local Druid of our own with one organization's data,
the service under gunicorn, process figures read from /proc, and the run's summary table.

Everything binds 127.0.0.1, and everything started here is stopped here, by pid. The shared
cluster on the default ports is never stopped or signalled: every fault is done to the cluster
at `PROXY_SOAK_DRUID_PORT_OFFSET` (default 230).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from proxyctl.ingest.generator import generate, organization_ids
from tests.support.net import free_port
from tests.support.served import BIN, ROUTE, clean_env, cli, wait_healthy

SEED = 20190401
SESSIONS = 20_000
DATASOURCE = "soak_sessions"
# Unless a test sets its own: admission limits are other tests' subject, so every answer is Druid's.
LIMITS_OFF = {
    "rate_limit_per_org_per_min": "0",
    "rate_limit_per_principal_per_min": "0",
    "max_concurrent_per_org": "0",
    "max_concurrent_per_principal": "0",
}
PORT_OFFSET = int(os.environ.get("PROXY_SOAK_DRUID_PORT_OFFSET", "230"))

# Lines for the terminal summary, filled by the tests: title → rows.
SUMMARY: dict[str, list[str]] = {}
SETUP: list[str] = []
SUMMARY["soak set-up"] = SETUP


@dataclass(frozen=True)
class Cluster:
    """A local Druid started with its own port offset and state directory."""

    port_offset: int
    state_dir: Path

    @property
    def broker_url(self) -> str:
        return f"http://127.0.0.1:{8082 + self.port_offset}"

    @property
    def overlord_url(self) -> str:
        return f"http://127.0.0.1:{8081 + self.port_offset}"

    def _args(self) -> list[str]:
        return ["--port-offset", str(self.port_offset), "--state-dir", str(self.state_dir)]

    def up(self) -> None:
        """Start whatever is not running and wait until the cluster is ready; without Druid's
        query caches, so the fault cases' slow query is really run every time."""
        cli(clean_env(), "druid", "up", "--no-query-caches", *self._args())

    def down(self) -> None:
        cli(clean_env(), "druid", "down", *self._args(), timeout=120)

    def pids(self) -> dict[str, int]:
        """The pids `druid up` recorded, by service."""
        records: dict[str, dict[str, int]] = json.loads((self.state_dir / "pids.json").read_text())
        return {service: record["pid"] for service, record in records.items()}

    def broker_pid(self) -> int:
        return self.pids()["broker"]

    def signal_broker(self, signum: signal.Signals) -> None:
        os.kill(self.broker_pid(), signum)


@dataclass
class Server:
    """The reporting service under gunicorn (gthread workers), as it is deployed, started and
    stopped by the test."""

    name: str
    env: dict[str, str]
    log_path: Path
    workers: int = 2
    threads: int = 8
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            str(BIN / "gunicorn"),
            "-c",
            "python:proxy.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL, stderr=log)

    def wait_healthy(self, timeout: float = 60) -> None:
        assert self.process is not None, f"{self.name}: not started"
        wait_healthy(self.base_url, self.process, timeout, f"{self.name} (log: {self.log_path})")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextmanager
def serving(*services: Server) -> Iterator[None]:
    """Start the services together, wait until each answers, stop them all afterwards."""
    try:
        for service in services:
            service.start()
        for service in services:
            service.wait_healthy()
        yield
    finally:
        for service in services:
            service.stop()


def post_query(
    base_url: str,
    organization: str,
    token: str,
    body: dict[str, Any],
    request_id: str,
    timeout: float = 60,
    params: dict[str, str] | None = None,
) -> tuple[requests.Response, float]:
    """POST a query; the response and the seconds it took."""
    started = time.monotonic()
    response = requests.post(
        base_url + ROUTE.format(organization),
        json=body,
        headers={"Authorization": f"Token {token}", "X-Request-Id": request_id},
        params=params,
        timeout=timeout,
    )
    return response, time.monotonic() - started


@dataclass(frozen=True)
class SoakData:
    """One organization's sessions loaded into the soak cluster, with an API key for it."""

    cluster: Cluster
    data_dir: Path
    organization: str
    token: str

    def server(self, name: str, broker_url: str | None = None, **settings: str) -> Server:
        """A server on this data; settings are PROXY_* names without the prefix."""
        env = clean_env(
            backend="druid",
            data_dir=str(self.data_dir),
            druid_broker_url=broker_url or self.cluster.broker_url,
            druid_datasource=DATASOURCE,
            **{**LIMITS_OFF, **settings},
        )
        return Server(name, env, self.data_dir / f"{name}.log")


def load_soak_data(cluster: Cluster, data_dir: Path) -> SoakData:
    """Generate one organization's sessions, load them with the CLI, register the org and a key."""
    path = data_dir / "sessions.ndjson"
    generate(path, sessions=SESSIONS, orgs=1, seed=SEED)
    env = clean_env(
        backend="druid",
        data_dir=str(data_dir),
        druid_broker_url=cluster.broker_url,
        druid_overlord_url=cluster.overlord_url,
        druid_datasource=DATASOURCE,
    )
    started = time.monotonic()
    cli(env, "load", str(path))
    SETUP.append(
        f"{SESSIONS} sessions loaded with `reporting-proxy load` in {time.monotonic() - started:.0f} s"
    )
    (organization,) = organization_ids(1, SEED)
    cli(env, "orgs", "add", organization, "--name", "soak")
    token = cli(env, "tokens", "create", "--org", organization).strip().splitlines()[-1]
    return SoakData(cluster, data_dir, organization, token)
