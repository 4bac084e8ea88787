"""Real parts for the soak runs: a second local Druid of our own, the service under gunicorn,
a recording TCP proxy in front of the broker, and worker memory read from /proc.

Everything binds 127.0.0.1, and everything started here is stopped here, by pid.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

BIN = Path(sys.executable).parent


def cli(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    """Run `reporting-proxy` with `env`; its stdout, or an assertion naming the failure."""
    done = subprocess.run(
        [str(BIN / "reporting-proxy"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"reporting-proxy {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        """Start whatever is not running and wait until the cluster is ready."""
        cli(clean_env(), "druid", "up", *self._args())

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


def clean_env(**proxy_vars: str) -> dict[str, str]:
    """This environment without any PROXY_* variable, plus `proxy_vars` (name without prefix)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROXY_")}
    env.update({f"PROXY_{name.upper()}": value for name, value in proxy_vars.items()})
    return env


@dataclass
class Service:
    """The reporting service under gunicorn (gthread workers), as it is deployed."""

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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, f"{self.name}: gunicorn exited"
            try:
                if requests.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError(f"{self.name}: not healthy in {timeout:.0f} s; see {self.log_path}")

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
def serving(*services: Service) -> Iterator[None]:
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


_REQUEST_LINE = re.compile(rb"(GET|POST|DELETE) (/\S*) HTTP/1\.1\r\n")
_QUERY_ID = re.compile(rb'"queryId":"([^"]+)"')
_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")
_TAIL = 64  # bytes kept between reads, so a line split across two reads is still seen


@dataclass(frozen=True)
class Seen:
    """One thing the proxy saw: what, on which connection, when (time.monotonic())."""

    at: float
    connection: int
    kind: str  # "request", "query_id", "status", "closed"
    value: str


class RecordingProxy:
    """A TCP proxy on loopback in front of the broker that notes request lines, Druid query ids,
    response status lines and connection closes, each with its time. It changes no byte; it
    can hold back the broker's answer to a query id listed in `hold` (seconds), so a slow
    broker does not depend on how fast this machine is."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.seen: list[Seen] = []
        self.on_query: Callable[[str], None] | None = None
        self.hold: dict[str, float] = {}
        self._held_until: dict[int, float] = {}
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        threading.Thread(target=self._accept, name="recording-proxy", daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def wait_for(self, kind: str, value: str, timeout: float) -> Seen | None:
        """The first matching event, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((s for s in list(self.seen) if (s.kind, s.value) == (kind, value)), None)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def answer_to(self, request: Seen, timeout: float) -> Seen | None:
        """The broker's status line, or the close, that ended `request` on its connection."""
        deadline = time.monotonic() + timeout
        while True:
            ends = [
                s
                for s in list(self.seen)
                if s.connection == request.connection
                and s.at >= request.at
                and s.kind in ("status", "closed")
            ]
            if ends or time.monotonic() > deadline:
                return ends[0] if ends else None
            time.sleep(0.01)

    def _note(self, connection: int, kind: str, value: str) -> None:
        self.seen.append(Seen(time.monotonic(), connection, kind, value))
        if kind == "query_id" and value in self.hold:
            self._held_until[connection] = time.monotonic() + self.hold[value]
        if kind == "query_id" and self.on_query is not None:
            self.on_query(value)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._connections += 1
                number = self._connections
            threading.Thread(target=self._bridge, args=(client, number), daemon=True).start()

    def _bridge(self, client: socket.socket, number: int) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        done = threading.Event()
        threading.Thread(target=self._pump, args=(upstream, client, number, False, done), daemon=True).start()
        self._pump(client, upstream, number, True, done)

    def _pump(
        self, source: socket.socket, sink: socket.socket, number: int, outbound: bool, done: threading.Event
    ) -> None:
        tail = b""
        try:
            while chunk := source.recv(65536):
                # Scan before forwarding: a hold must be set before the answer can arrive.
                tail = self._scan(tail, chunk, number, outbound)
                if not outbound:
                    time.sleep(max(0.0, self._held_until.get(number, 0.0) - time.monotonic()))
                sink.sendall(chunk)
        except OSError:
            pass
        if not done.is_set():
            done.set()
            self._note(number, "closed", "client" if outbound else "upstream")
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _scan(self, tail: bytes, chunk: bytes, number: int, outbound: bool) -> bytes:
        window = tail + chunk
        patterns = (
            ((_REQUEST_LINE, "request"), (_QUERY_ID, "query_id")) if outbound else ((_STATUS_LINE, "status"),)
        )
        for pattern, kind in patterns:
            for match in pattern.finditer(window):
                if match.end() > len(tail):
                    value = b" ".join(g for g in match.groups()).decode("latin-1")
                    self._note(number, kind, value)
        return window[-_TAIL:]


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
        f"{base_url}/api/reporting/v1/orgs/{organization}/visitor_sessions",
        json=body,
        headers={"Authorization": f"Token {token}", "X-Request-Id": request_id},
        params=params,
        timeout=timeout,
    )
    return response, time.monotonic() - started
