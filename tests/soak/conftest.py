"""The soak runs' own Druid (second cluster, own ports and state), its data, and the summary.

The shared cluster on the default ports is never stopped or signalled: every fault here is
done to the cluster this file starts, at `PROXY_SOAK_DRUID_PORT_OFFSET` (default 230).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxyctl.ingest.generator import generate, organization_ids
from tests.soak.harness import Cluster, Service, clean_env, cli

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
class SoakData:
    """One organization's sessions loaded into the soak cluster, with an API key for it."""

    cluster: Cluster
    data_dir: Path
    organization: str
    token: str

    def service(self, name: str, broker_url: str | None = None, **settings: str) -> Service:
        """A service on this data; settings are PROXY_* names without the prefix."""
        env = clean_env(
            backend="druid",
            data_dir=str(self.data_dir),
            druid_broker_url=broker_url or self.cluster.broker_url,
            druid_datasource=DATASOURCE,
            **{**LIMITS_OFF, **settings},
        )
        return Service(name, env, self.data_dir / f"{name}.log")


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
    data_dir = tmp_path_factory.mktemp("soak-service")
    path = data_dir / "sessions.ndjson"
    generate(path, sessions=SESSIONS, orgs=1, seed=SEED)
    env = clean_env(
        backend="druid",
        data_dir=str(data_dir),
        druid_broker_url=soak_cluster.broker_url,
        druid_overlord_url=soak_cluster.overlord_url,
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
    return SoakData(soak_cluster, data_dir, organization, token)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for title, rows in SUMMARY.items():
        terminalreporter.write_sep("-", title)
        for row in rows:
            terminalreporter.write_line(row)
