"""The local PostgreSQL commands at their boundaries: the process and the server mocked."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from proxyctl.postgres import cluster, commands
from proxyctl.postgres.cluster import Layout
from proxyctl.postgres.commands import postgres

# Far from the running local cluster's port; nothing is started anyway.
LAYOUT = Layout(Path("/nonexistent/state"), port=56999)
OPTIONS = ["--state-dir", str(LAYOUT.state_dir), "--port", str(LAYOUT.port)]
RECORD = cluster.ProcessRecord(4242, 7)


class Calls:
    """What the commands asked of the cluster module."""

    def __init__(self) -> None:
        self.started: list[Layout] = []
        self.initialised: list[Layout] = []


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    recorded = Calls()
    monkeypatch.setattr(cluster, "initialized", lambda layout: True)
    monkeypatch.setattr(cluster, "initdb", recorded.initialised.append)
    monkeypatch.setattr(cluster, "start", lambda layout: recorded.started.append(layout) or RECORD)
    monkeypatch.setattr(cluster, "ensure_database", lambda layout: False)
    monkeypatch.setattr(commands, "port_in_use", lambda port: False)
    monkeypatch.setattr(commands, "_POLL_SECS", 0)
    return recorded


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(postgres, [*args, *OPTIONS])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("running", "answers", "line"),
    [
        (None, False, ["postgres", "down", "pid", "-"]),
        (RECORD, False, ["postgres", "starting", "pid", "4242"]),
        (RECORD, True, ["postgres", "up", "pid", "4242"]),
    ],
)
def test_status_tells_up_from_starting_and_down(
    monkeypatch: pytest.MonkeyPatch, running: cluster.ProcessRecord | None, answers: bool, line: list[str]
) -> None:
    monkeypatch.setattr(cluster, "running", lambda layout: running)
    monkeypatch.setattr(cluster, "answers", lambda layout: answers)
    code, output = _invoke("status")
    assert code == 0, output
    assert output.split() == [*line, "port", "56999", "postgresql://postgres@127.0.0.1:56999/reporting"]


def test_up_when_running_starts_nothing_and_prints_the_url(
    calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "running", lambda layout: RECORD)
    code, output = _invoke("up")
    assert code == 0, output
    assert calls.started == []
    assert "already running" in output
    assert "export PROXY_ACCESS_DATABASE_URL=postgresql://postgres@127.0.0.1:56999/reporting" in output


def test_up_initialises_a_new_cluster_starts_it_and_waits_until_it_answers(
    calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([False, False, True])
    monkeypatch.setattr(cluster, "initialized", lambda layout: False)
    monkeypatch.setattr(cluster, "running", lambda layout: RECORD if calls.started else None)
    monkeypatch.setattr(cluster, "answers", lambda layout: next(answers))
    code, output = _invoke("up")
    assert code == 0, output
    assert calls.initialised == calls.started == [LAYOUT]
    assert "postgres ready: postgresql://postgres@127.0.0.1:56999/reporting" in output


def test_up_refuses_a_port_another_process_holds(calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "running", lambda layout: None)
    monkeypatch.setattr(commands, "port_in_use", lambda port: port == LAYOUT.port)
    code, output = _invoke("up")
    assert code == 1
    assert "port 56999 already in use" in output
    assert calls.started == []


def test_up_reports_a_server_that_dies_while_starting(calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "running", lambda layout: None)
    monkeypatch.setattr(cluster, "answers", lambda layout: False)
    code, output = _invoke("up")
    assert code == 1
    assert f"postgres exited during start-up; log: {LAYOUT.log_path}" in output


def test_up_reports_a_failed_initdb(calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(layout: Layout) -> None:
        raise RuntimeError("initdb failed (1):\ncould not access directory")

    monkeypatch.setattr(cluster, "running", lambda layout: None)
    monkeypatch.setattr(cluster, "initialized", lambda layout: False)
    monkeypatch.setattr(cluster, "initdb", fail)
    code, output = _invoke("up")
    assert code == 1
    assert "could not access directory" in output
    assert calls.started == []


@pytest.mark.parametrize(
    ("outcome", "printed"),
    [("stopped", "postgres stopped"), (None, "nothing running in /nonexistent/state")],
)
def test_down_stops_only_the_recorded_server(
    monkeypatch: pytest.MonkeyPatch, outcome: str | None, printed: str
) -> None:
    monkeypatch.setattr(cluster, "stop", lambda layout: outcome)
    code, output = _invoke("down")
    assert code == 0, output
    assert output.strip() == printed


def test_the_server_listens_on_loopback_only_with_its_socket_in_the_state_dir() -> None:
    command = cluster.server_command(LAYOUT)
    assert "listen_addresses=127.0.0.1" in command
    assert f"unix_socket_directories={LAYOUT.state_dir}" in command
    assert command[command.index("-p") + 1] == "56999"


@pytest.mark.parametrize(
    ("euid", "state_dir", "identity"),
    [
        (0, Path("/var/tmp/reporting-proxy/postgres-local"), {"user": "postgres", "group": "postgres"}),
        (1000, Path.home() / ".cache/reporting-proxy/postgres-local", {}),
    ],
)
def test_as_root_the_server_runs_as_postgres_in_a_directory_it_can_reach(
    monkeypatch: pytest.MonkeyPatch, euid: int, state_dir: Path, identity: dict[str, str]
) -> None:
    monkeypatch.setattr(cluster.os, "geteuid", lambda: euid)
    assert cluster.default_state_dir() == state_dir
    assert {k: v for k, v in cluster._identity().items() if k != "extra_groups"} == identity
