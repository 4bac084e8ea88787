"""Start, find and stop the JVMs of the local Druid cluster, by the pids `up` recorded."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

from proxyctl.detached import ProcessRecord, start_detached
from proxyctl.detached import is_alive as is_alive  # `druid status` asks it through this module
from proxyctl.druid.config import Layout, java_command


def read_records(layout: Layout) -> dict[str, ProcessRecord]:
    """The processes recorded by the last `up` in this state directory."""
    if not layout.pid_file.exists():
        return {}
    raw: dict[str, dict[str, int]] = json.loads(layout.pid_file.read_text())
    return {name: ProcessRecord(**fields) for name, fields in raw.items()}


def _write_records(layout: Layout, records: dict[str, ProcessRecord]) -> None:
    raw = {name: {"pid": r.pid, "start_ticks": r.start_ticks} for name, r in records.items()}
    layout.pid_file.write_text(json.dumps(raw, indent=2) + "\n")


def running(layout: Layout) -> dict[str, ProcessRecord]:
    """The recorded processes that are still alive."""
    return {name: r for name, r in read_records(layout).items() if is_alive(r)}


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start(layout: Layout, service: str) -> ProcessRecord:
    """Launch a service detached from this terminal and record its pid."""
    record = start_detached(java_command(layout, service), layout.state_dir, layout.log_path(service))
    _write_records(layout, {**read_records(layout), service: record})
    return record


def stop_all(layout: Layout, grace_secs: float = 30.0) -> dict[str, str]:
    """Stop every recorded live process: the Druid services first, ZooKeeper last."""
    alive = running(layout)
    # Druid services unannounce themselves from ZooKeeper while shutting down; with
    # ZooKeeper already gone they retry until killed.
    druid_services = {name: r for name, r in alive.items() if name != "zookeeper"}
    outcome = _terminate(druid_services, grace_secs)
    outcome.update(_terminate({n: r for n, r in alive.items() if n == "zookeeper"}, grace_secs))
    layout.pid_file.unlink(missing_ok=True)
    return outcome


def _terminate(records: dict[str, ProcessRecord], grace_secs: float) -> dict[str, str]:
    """SIGTERM the processes, SIGKILL any still alive after the grace period."""
    for record in records.values():
        os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_secs
    while time.monotonic() < deadline and any(is_alive(r) for r in records.values()):
        time.sleep(0.2)
    outcome = {name: "stopped" for name in records}
    for name, record in records.items():
        if is_alive(record):
            os.kill(record.pid, signal.SIGKILL)
            outcome[name] = "killed"
    return outcome
