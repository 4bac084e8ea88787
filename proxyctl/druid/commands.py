"""`reporting-proxy druid up|down|status|logs`: a real Apache Druid on this machine, no Docker."""

from __future__ import annotations

import functools
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import requests

from proxyctl.druid import processes
from proxyctl.druid.config import SERVICES, Layout, write_configs
from proxyctl.druid.jars import (
    DRUID_VERSION,
    JarResolutionError,
    default_jar_dir,
    ensure_jars,
)

_HTTP_TIMEOUT = (1.0, 3.0)
_POLL_SECS = 1.0
_WAITING_NOTE_EVERY_SECS = 15.0


@dataclass(frozen=True)
class Check:
    """One readiness condition, owned by the service whose log explains its failure."""

    label: str
    service: str
    probe: Callable[[Layout], bool]


def _http_ok(service: str, path: str) -> Callable[[Layout], bool]:
    def probe(layout: Layout) -> bool:
        try:
            return requests.get(layout.url(service) + path, timeout=_HTTP_TIMEOUT).ok
        except requests.RequestException:
            return False

    return probe


def _worker_registered(layout: Layout) -> bool:
    try:
        response = requests.get(
            layout.url("coordinator") + "/druid/indexer/v1/workers", timeout=_HTTP_TIMEOUT
        )
        return response.ok and len(response.json()) > 0
    except (requests.RequestException, ValueError):
        return False


def _zookeeper_serving(layout: Layout) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", layout.port("zookeeper")), timeout=1) as s:
            s.sendall(b"srvr")
            return b"Zookeeper version" in s.recv(1024)
    except OSError:
        return False


# The coordinator serves the overlord API too (asOverlord), so both leaders are asked there.
CHECKS: tuple[Check, ...] = (
    Check("zookeeper serving", "zookeeper", _zookeeper_serving),
    Check("coordinator leader", "coordinator", _http_ok("coordinator", "/druid/coordinator/v1/isLeader")),
    Check("overlord leader", "coordinator", _http_ok("coordinator", "/druid/indexer/v1/isLeader")),
    Check("historical ready", "historical", _http_ok("historical", "/druid/historical/v1/readiness")),
    Check("broker ready", "broker", _http_ok("broker", "/druid/broker/v1/readiness")),
    Check("indexer worker registered", "indexer", _worker_registered),
)


class StartupError(click.ClickException):
    """A service died or did not become ready; the message names it and its log."""


def _default_state_dir(port_offset: int) -> Path:
    name = "druid-local" if port_offset == 0 else f"druid-local-{port_offset}"
    return Path.home() / ".cache" / "reporting-proxy" / name


def _cluster_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the options that pick a cluster and hand the command a `Layout`."""

    @click.option(
        "--state-dir",
        type=click.Path(path_type=Path),
        envvar="PROXY_DRUID_LOCAL_DIR",
        help="Configs, data, logs, pids [default: ~/.cache/reporting-proxy/druid-local].",
    )
    @click.option(
        "--port-offset",
        type=click.IntRange(0, 1000),
        default=0,
        show_default=True,
        envvar="PROXY_DRUID_LOCAL_PORT_OFFSET",
        help="Added to every default port (zk 2181, derby 1527, 8081-8083, 8091).",
    )
    @click.option(
        "--jar-dir",
        type=click.Path(path_type=Path),
        envvar="PROXY_DRUID_LOCAL_JARS",
        help=f"Jar cache [default: ~/.cache/reporting-proxy/druid-{DRUID_VERSION}/lib].",
    )
    @functools.wraps(command)
    def wrapper(state_dir: Path | None, port_offset: int, jar_dir: Path | None, **kwargs: Any) -> None:
        state = (state_dir or _default_state_dir(port_offset)).expanduser().absolute()
        jars = (jar_dir or default_jar_dir()).expanduser().absolute()
        command(Layout(state, jars, port_offset), **kwargs)

    return wrapper


@click.group()
def druid() -> None:
    """A real local Apache Druid: ZooKeeper, coordinator+overlord, broker, historical, indexer."""


@druid.command()
@click.option(
    "--timeout",
    type=float,
    default=240.0,
    show_default=True,
    help="Seconds to wait for the cluster to become ready.",
)
@click.option(
    "--query-caches/--no-query-caches",
    default=True,
    show_default=True,
    help="The historical's segment cache and the broker's result-level cache, as in production; "
    "off for fault tests that need every query to run.",
)
@_cluster_options
def up(layout: Layout, timeout: float, query_caches: bool) -> None:
    """Resolve the jars if needed, start every service not yet running, wait until ready."""
    started = time.monotonic()
    try:
        ensure_jars(layout.lib_dir, click.echo)
    except JarResolutionError as exc:
        raise click.ClickException(str(exc)) from exc
    alive = processes.running(layout)
    missing = [name for name in SERVICES if name not in alive]
    if not missing:
        click.echo(f"already running in {layout.state_dir}")
    else:
        _start_missing(layout, missing, bool(alive), query_caches)
    _wait_ready(layout, started, timeout)
    _print_endpoints(layout, time.monotonic() - started)


def _start_missing(layout: Layout, missing: list[str], partly_running: bool, query_caches: bool) -> None:
    if not partly_running:
        write_configs(layout, query_caches)
    _refuse_busy_ports(layout, missing)
    for service in missing:
        record = processes.start(layout, service)
        click.echo(f"started {service:<12} pid {record.pid:<7} log {layout.log_path(service)}")


def _refuse_busy_ports(layout: Layout, services: list[str]) -> None:
    wanted = [*services, "derby"] if "coordinator" in services else services
    busy = [f"{name} {layout.port(name)}" for name in wanted if processes.port_in_use(layout.port(name))]
    if busy:
        raise StartupError(
            f"port(s) already in use by another process: {', '.join(busy)}; "
            "stop it or pick another --port-offset"
        )


def _wait_ready(layout: Layout, started: float, timeout: float) -> None:
    pending = list(CHECKS)
    next_note = time.monotonic() + _WAITING_NOTE_EVERY_SECS
    while pending:
        _fail_if_dead(layout, pending)
        for check in [c for c in pending if c.probe(layout)]:
            pending.remove(check)
            click.echo(f"  ready: {check.label:<26} {time.monotonic() - started:5.1f}s")
        if pending and time.monotonic() - started > timeout:
            raise _not_ready_error(layout, pending, timeout)
        if pending and time.monotonic() >= next_note:
            click.echo(f"  waiting for: {', '.join(c.label for c in pending)}")
            next_note = time.monotonic() + _WAITING_NOTE_EVERY_SECS
        time.sleep(_POLL_SECS if pending else 0)


def _fail_if_dead(layout: Layout, pending: list[Check]) -> None:
    alive = processes.running(layout)
    for service in dict.fromkeys(c.service for c in pending):
        if service not in alive:
            log = layout.log_path(service)
            raise StartupError(
                f"{service} exited during start-up; log: {log}\n{_tail(log, 15)}\n"
                "any other started service keeps running; `reporting-proxy druid down` stops them"
            )


def _not_ready_error(layout: Layout, pending: list[Check], timeout: float) -> StartupError:
    lines = [f"not ready after {timeout:.0f}s:"]
    lines += [f"  {c.label}: see {layout.log_path(c.service)}" for c in pending]
    lines.append("the started processes keep running; `reporting-proxy druid down` stops them")
    return StartupError("\n".join(lines))


def _tail(path: Path, count: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-count:])
    except OSError:
        return "(no log)"


def _print_endpoints(layout: Layout, elapsed: float) -> None:
    click.echo(f"druid {DRUID_VERSION} ready in {elapsed:.1f}s (state: {layout.state_dir})")
    click.echo(f"  coordinator+overlord {layout.url('coordinator')}")
    click.echo(f"  broker               {layout.url('broker')}")
    click.echo(
        f"  export PROXY_DRUID_BROKER_URL={layout.url('broker')} "
        f"PROXY_DRUID_OVERLORD_URL={layout.url('coordinator')}"
    )


@druid.command()
@_cluster_options
def down(layout: Layout) -> None:
    """Stop exactly the processes `up` started in this state directory."""
    outcome = processes.stop_all(layout)
    for service, result in outcome.items():
        click.echo(f"{service:<12} {result}")
    if not outcome:
        click.echo(f"nothing running in {layout.state_dir}")


_HEALTH_PATHS: dict[str, str] = {
    "coordinator": "/status/health",
    "broker": "/druid/broker/v1/readiness",
    "historical": "/druid/historical/v1/readiness",
    "indexer": "/status/health",
}


@druid.command()
@_cluster_options
def status(layout: Layout) -> None:
    """Print each service, its pid and port, and whether it answers."""
    records = processes.read_records(layout)
    for service in SERVICES:
        record = records.get(service)
        alive = record is not None and processes.is_alive(record)
        pid = str(record.pid) if record else "-"
        answering = _answers(layout, service) if alive else False
        state = "up" if answering else ("starting" if alive else "down")
        click.echo(f"{service:<12} {state:<9} pid {pid:<7} port {layout.port(service)}")


def _answers(layout: Layout, service: str) -> bool:
    if service == "zookeeper":
        return _zookeeper_serving(layout)
    return _http_ok(service, _HEALTH_PATHS[service])(layout)


@druid.command()
@click.argument("service", required=False, type=click.Choice(SERVICES))
@click.option("-n", "--lines", type=int, default=40, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the log grows.")
@_cluster_options
def logs(layout: Layout, service: str | None, lines: int, follow: bool) -> None:
    """Print the log paths, or the tail of one service's log."""
    if service is None:
        for name in SERVICES:
            click.echo(f"{name:<12} {layout.log_path(name)}")
        return
    command = ["tail", "-n", str(lines), *(["-F"] if follow else []), str(layout.log_path(service))]
    try:
        subprocess.run(command, check=False)
    except KeyboardInterrupt:
        pass
