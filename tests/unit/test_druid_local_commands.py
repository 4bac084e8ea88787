"""The local Druid commands' readiness and status probes, mocked at the transport."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from click.testing import CliRunner

from proxyctl.detached import ProcessRecord
from proxyctl.druid import commands, processes
from proxyctl.druid.commands import CHECKS, Check
from proxyctl.druid.config import Layout

# Far from the running local cluster's ports; the transport is mocked anyway.
LAYOUT = Layout(Path("/nonexistent/state"), Path("/nonexistent/lib"), port_offset=500)
HTTP_CHECKS = {
    "coordinator leader": f"{LAYOUT.url('coordinator')}/druid/coordinator/v1/isLeader",
    "overlord leader": f"{LAYOUT.url('coordinator')}/druid/indexer/v1/isLeader",
    "historical ready": f"{LAYOUT.url('historical')}/druid/historical/v1/readiness",
    "broker ready": f"{LAYOUT.url('broker')}/druid/broker/v1/readiness",
}
WORKERS_URL = f"{LAYOUT.url('coordinator')}/druid/indexer/v1/workers"


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def _check(label: str) -> Check:
    return next(check for check in CHECKS if check.label == label)


def test_every_readiness_check_is_probed_over_http_except_zookeeper() -> None:
    labels = {check.label for check in CHECKS}
    assert labels == {*HTTP_CHECKS, "indexer worker registered", "zookeeper serving"}


@pytest.mark.parametrize("label", sorted(HTTP_CHECKS))
@pytest.mark.parametrize(
    ("answer", "ready"),
    [
        ({"status": 200, "json": True}, True),
        ({"status": 503, "body": "not yet"}, False),
        ({"body": requests.ConnectionError("refused")}, False),
        ({"body": requests.Timeout("slow")}, False),
    ],
)
def test_a_service_is_ready_when_its_endpoint_answers_ok(
    http: responses.RequestsMock, label: str, answer: dict[str, Any], ready: bool
) -> None:
    http.get(HTTP_CHECKS[label], **answer)
    assert _check(label).probe(LAYOUT) is ready


@pytest.mark.parametrize(
    ("answer", "ready"),
    [
        ({"json": [{"worker": {"host": "127.0.0.1:8591"}}]}, True),
        ({"json": []}, False),
        ({"body": "<html>starting</html>"}, False),
        ({"status": 500, "json": [{"worker": {}}]}, False),
        ({"body": requests.ConnectionError("refused")}, False),
    ],
)
def test_the_indexer_is_ready_once_the_overlord_lists_a_worker(
    http: responses.RequestsMock, answer: dict[str, Any], ready: bool
) -> None:
    http.get(WORKERS_URL, **answer)
    assert _check("indexer worker registered").probe(LAYOUT) is ready


def test_status_tells_up_from_starting_and_down(
    http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = {
        "coordinator": ProcessRecord(101, 1),
        "broker": ProcessRecord(102, 1),
        "indexer": ProcessRecord(103, 0),
    }
    monkeypatch.setattr(processes, "read_records", lambda layout: records)
    monkeypatch.setattr(processes, "is_alive", lambda record: record.start_ticks == 1)
    http.get(f"{LAYOUT.url('coordinator')}/status/health", json=True)
    http.get(f"{LAYOUT.url('broker')}/druid/broker/v1/readiness", status=503)
    options = ["--state-dir", str(LAYOUT.state_dir), "--port-offset", "500"]
    result = CliRunner().invoke(commands.druid, ["status", *options])
    assert result.exit_code == 0, result.output
    assert [line.split() for line in result.output.splitlines()] == [
        ["zookeeper", "down", "pid", "-", "port", "2681"],
        ["coordinator", "up", "pid", "101", "port", "8581"],
        ["historical", "down", "pid", "-", "port", "8583"],
        ["broker", "starting", "pid", "102", "port", "8582"],
        ["indexer", "down", "pid", "103", "port", "8591"],
    ]
