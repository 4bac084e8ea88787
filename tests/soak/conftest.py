"""The soak runs' own Druid (second cluster, own ports and state), its data, and the summary.

The shared cluster on the default ports is never stopped or signalled: every fault here is
done to the cluster started here, at `PROXY_SOAK_DRUID_PORT_OFFSET` (default 230).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.soak import PORT_OFFSET, SETUP, SUMMARY, Cluster, SoakData, load_soak_data


@pytest.fixture(scope="session")
def soak_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(PORT_OFFSET, tmp_path_factory.mktemp("druid-soak"))
    try:
        started = time.monotonic()
        cluster.up()
        SETUP.append(
            f"second Druid up in {time.monotonic() - started:.0f} s (ports +{PORT_OFFSET}, {cluster.state_dir})"
        )
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def soak_data(soak_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> SoakData:
    return load_soak_data(soak_cluster, tmp_path_factory.mktemp("soak-service"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for title, rows in SUMMARY.items():
        terminalreporter.write_sep("-", title)
        for row in rows:
            terminalreporter.write_line(row)
