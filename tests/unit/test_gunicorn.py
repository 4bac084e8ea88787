"""`reporting-proxy serve` under real gunicorn with two worker processes: metrics summed
across workers, one rate limit for all of them, JSON access lines on stderr, and a killed
worker's gauges and concurrency slots dropped by the config module's hooks."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from proxy.access.store import AccessStore
from proxy.runtime.limit_table import Shape, Table
from proxy.runtime.limits import Limits, organization_digest, process_identity
from proxy.runtime.table_limits import TableLimiter
from tests.support.ids import ORG
from tests.support.net import free_port
from tests.unit.web import QUERY, ROUTE, url

BIN = Path(sys.executable).parent
RATE = 5


@dataclass(frozen=True)
class Served:
    base: str
    master: subprocess.Popen[bytes]
    data_dir: Path
    stderr: Path
    key: str

    @property
    def metrics_dir(self) -> Path:
        return self.data_dir / "prometheus" / str(self.master.pid)

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.master.pid}/task/{self.master.pid}/children").read_text()
        return [int(pid) for pid in children.split()]


def _until(check: object, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _healthy(base: str) -> bool:
    try:
        return requests.get(base + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    store = AccessStore(tmp_path / "access.sqlite3")
    store.add_organization(ORG, "Demo")
    key = store.create_key([ORG], "k")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXY_", "PROMETHEUS_"))}
    env.update(PROXY_DATA_DIR=str(tmp_path), PROXY_RATE_LIMIT_PER_ORG_PER_MIN=str(RATE))
    port = free_port()
    stderr = tmp_path / "stderr.log"
    command = [
        str(BIN / "reporting-proxy"),
        "serve",
        "--no-front",
        "--port",
        str(port),
        "--workers",
        "2",
        "--threads",
        "2",
    ]
    with stderr.open("wb") as sink:
        master = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=sink)
    base = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: master.poll() is None and _healthy(base))
        yield Served(base, master, tmp_path, stderr, key)
    finally:
        master.terminate()
        master.wait(timeout=30)


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            series, value = line.rsplit(" ", 1)
            got = ",".join(sorted(series[len(name) + 1 : -1].split(",")))
            if got == wanted:
                return float(value)
    return 0.0


def _access_lines(served: Served, method: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in served.stderr.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request" and line["method"] == method]


def test_two_workers_share_metrics_and_limits(served: Served) -> None:
    auth = {"Authorization": f"Token {served.key}"}
    statuses: list[int] = []
    # Fresh connections until both workers have answered a query: the limit and the metrics
    # below then hold for the two processes together.
    while len(statuses) < 2 * RATE or len({line["pid"] for line in _access_lines(served, "POST")}) < 2:
        assert len(statuses) < 100, "one worker never answered"
        statuses.append(requests.post(served.base + url(), json=QUERY, headers=auth, timeout=10).status_code)
    text = requests.get(served.base + "/metrics", timeout=5).text
    posts = _access_lines(served, "POST")
    assert statuses.count(200) == RATE and statuses.count(429) == len(statuses) - RATE
    assert [line["status"] for line in posts] == statuses
    assert _metric(text, "reporting_proxy_requests_total", route=ROUTE, method="POST", status="200") == RATE
    assert (
        _metric(text, "reporting_proxy_requests_total", route=ROUTE, method="POST", status="429")
        == len(statuses) - RATE
    )
    assert _metric(text, "reporting_proxy_rejections_total", code="too_many_requests") == len(statuses) - RATE
    assert _metric(text, "reporting_proxy_backend_duration_seconds_count", backend="embedded") == RATE
    assert served.key.split("_", 2)[2] not in served.stderr.read_text()


def _hold_slot_as(path: Path, pid: int, started: str) -> None:
    """Count a running query of process `pid` on the organization, as its admit would."""
    table = Table.open(path, Shape())
    with table.lock:
        now = time.time_ns()
        entry, position = table.entry_of(pid, int(started)), table.locate(organization_digest(ORG), now)
        assert entry is not None and position is not None
        table.take((position,), entry, now)


def test_a_killed_worker_leaves_no_gauge_and_no_slot(served: Served) -> None:
    victim = served.workers()[0]
    identity = process_identity(victim)
    assert identity is not None
    limiter = TableLimiter(served.data_dir / "limits.shm", Limits(600, 300, 8, 6))
    _hold_slot_as(served.data_dir / "limits.shm", victim, identity[1])
    assert limiter.slots_held(ORG) == 1
    _until((served.metrics_dir / f"gauge_livesum_{victim}.db").exists)
    os.kill(victim, signal.SIGKILL)
    _until(lambda: not (served.metrics_dir / f"gauge_livesum_{victim}.db").exists())
    _until(lambda: limiter.slots_held(ORG) == 0)


def test_the_master_removes_its_metrics_dir(served: Served) -> None:
    assert served.metrics_dir.is_dir()
    served.master.terminate()
    served.master.wait(timeout=30)
    assert not served.metrics_dir.exists()


def test_the_control_socket_is_this_instances_own(served: Served) -> None:
    path = served.data_dir / "run" / "gunicorn.ctl"
    assert path.is_socket() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_refused_request_line_is_logged_as_json_without_its_credential(served: Served) -> None:
    secret = secrets.token_urlsafe(32)
    port = int(served.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"Token rpk_0123456789abcdef_{secret}\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 400")
    _until(lambda: "Invalid" in served.stderr.read_text())
    lines = [line for line in served.stderr.read_text().splitlines() if line.strip()]
    assert [json.loads(line)["logger"] for line in lines if "Invalid" in line] == ["gunicorn.error"]
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert secret not in served.stderr.read_text()


def test_no_control_socket_leaves_none(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXY_", "PROMETHEUS_"))}
    env.update(PROXY_DATA_DIR=str(tmp_path))
    port = free_port()
    command = [
        str(BIN / "reporting-proxy"),
        "serve",
        "--no-front",
        "--no-control-socket",
        "--port",
        str(port),
    ]
    master = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _until(lambda: master.poll() is None and _healthy(f"http://127.0.0.1:{port}"))
        assert not (tmp_path / "run" / "gunicorn.ctl").exists()
    finally:
        master.terminate()
        master.wait(timeout=30)
