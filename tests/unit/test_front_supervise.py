"""`reporting-proxy serve` as one unit: nginx and gunicorn start together, stop together, and the
death of either stops the other with a non-zero exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.front import gunicorn_master, serve_command
from tests.support.net import free_port
from tests.support.served import clean_env


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    command = serve_command(port, workers=1, threads=1)
    with (data_dir / "serve.log").open("ab") as log:
        return subprocess.Popen(command, env=clean_env(data_dir=str(data_dir)), stderr=log)


def _wait_healthy(port: int, serve: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert serve.poll() is None, "serve exited during start-up"
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError("serve never became healthy")


def _pids(data_dir: Path) -> tuple[int, int]:
    return int((data_dir / "run" / "nginx.pid").read_text()), gunicorn_master(data_dir)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    port = free_port()
    serve = _start(tmp_path, port)
    try:
        _wait_healthy(port, serve)
        yield serve, tmp_path, port
    finally:
        if serve.poll() is None:
            serve.terminate()
            serve.wait(timeout=60)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_both(
    serving: tuple[subprocess.Popen[bytes], Path, int], stop: signal.Signals
) -> None:
    serve, data_dir, _ = serving
    nginx, gunicorn = _pids(data_dir)
    serve.send_signal(stop)
    assert serve.wait(timeout=60) == 0
    assert (_alive(nginx), _alive(gunicorn)) == (False, False)


@pytest.mark.parametrize("victim", ["nginx", "gunicorn"])
def test_the_death_of_either_stops_the_other(
    serving: tuple[subprocess.Popen[bytes], Path, int], victim: str
) -> None:
    serve, data_dir, _ = serving
    nginx, gunicorn = _pids(data_dir)
    os.kill(nginx if victim == "nginx" else gunicorn, signal.SIGKILL)
    assert serve.wait(timeout=60) == 1
    assert (_alive(nginx), _alive(gunicorn)) == (False, False)
    # nginx's workers outlive a killed master unless their group is stopped too.
    assert (_group_members(nginx), _group_members(gunicorn)) == ([], [])


def _group_members(group: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[2]) == group and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_a_second_serve_on_the_same_data_dir_is_refused(
    serving: tuple[subprocess.Popen[bytes], Path, int],
) -> None:
    _, data_dir, _ = serving
    second = _start(data_dir, free_port())
    assert second.wait(timeout=30) == 1
    assert "another `reporting-proxy serve` is running" in (data_dir / "serve.log").read_text()


def _processes_naming(path: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(path).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if _alive(pid)]


def test_a_port_in_use_stops_the_start(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        serve = _start(tmp_path, taken.getsockname()[1])
        assert serve.wait(timeout=60) == 1
    assert "Address already in use" in (tmp_path / "serve.log").read_text()
    assert _processes_naming(tmp_path) == []
