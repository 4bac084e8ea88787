"""The local Druid's rendered configuration: placeholders filled, ports and paths per cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyctl.druid.config import Layout, java_command, write_configs


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / "state", tmp_path / "lib", port_offset=7)
    write_configs(layout)
    return layout


def _properties(layout: Layout, name: str) -> dict[str, str]:
    file = "common.runtime.properties" if name == "_common" else "runtime.properties"
    text = (layout.conf_dir(name) / file).read_text()
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return dict(pairs)


def test_no_placeholder_is_left(layout: Layout) -> None:
    rendered = "".join(p.read_text() for p in (layout.state_dir / "conf").rglob("*") if p.is_file())
    assert "${" not in rendered


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("druid.zk.service.host", "127.0.0.1:2188"),
        ("druid.zk.paths.base", "/druid-7"),
        ("druid.metadata.storage.connector.port", "1534"),
        ("druid.host", "127.0.0.1"),
        ("druid.bindOnHost", "true"),
        ("druid.extensions.loadList", "[]"),
        ("druid.monitoring.monitors", "[]"),
    ],
)
def test_common_property(layout: Layout, key: str, expected: str) -> None:
    assert _properties(layout, "_common")[key] == expected


def test_derby_path_is_absolute(layout: Layout) -> None:
    uri = _properties(layout, "_common")["druid.metadata.storage.connector.connectURI"]
    assert uri == f"jdbc:derby://127.0.0.1:1534/{layout.var_dir}/metadata.db;create=true"


@pytest.mark.parametrize(
    ("service", "port"),
    [("coordinator", "8088"), ("broker", "8089"), ("historical", "8090"), ("indexer", "8098")],
)
def test_service_port(layout: Layout, service: str, port: str) -> None:
    assert _properties(layout, service)["druid.plaintextPort"] == port


def test_broker_lane_for_over_capacity_tests(layout: Layout) -> None:
    broker = _properties(layout, "broker")
    assert (
        broker["druid.query.scheduler.laning.strategy"],
        broker["druid.query.scheduler.laning.lanes.limited"],
    ) == ("manual", "2")


def test_zookeeper_binds_loopback_without_admin_server(layout: Layout) -> None:
    text = (layout.conf_dir("zookeeper") / "zoo.cfg").read_text()
    assert {"clientPortAddress=127.0.0.1", "clientPort=2188", "admin.enableServer=false"} <= set(
        text.splitlines()
    )


def test_service_classpath_puts_its_own_conf_first(layout: Layout) -> None:
    command = java_command(layout, "broker")
    classpath = command[command.index("-cp") + 1].split(":")
    assert classpath == [
        str(layout.conf_dir("broker")),
        str(layout.conf_dir("_common")),
        f"{layout.lib_dir}/*",
    ]
    assert command[-3:] == ["org.apache.druid.cli.Main", "server", "broker"]


@pytest.mark.parametrize("query_caches", [True, False])
@pytest.mark.parametrize(
    ("service", "key"),
    [
        ("broker", "druid.broker.cache.useResultLevelCache"),
        ("broker", "druid.broker.cache.populateResultLevelCache"),
        ("historical", "druid.historical.cache.useCache"),
        ("historical", "druid.historical.cache.populateCache"),
    ],
)
def test_query_caches_follow_the_switch(tmp_path: Path, query_caches: bool, service: str, key: str) -> None:
    layout = Layout(tmp_path / "state", tmp_path / "lib")
    write_configs(layout, query_caches)
    assert _properties(layout, service)[key] == str(query_caches).lower()
