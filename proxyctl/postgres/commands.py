"""`reporting-proxy postgres up|down|status`: the machine's PostgreSQL 15 on 127.0.0.1, own state dir."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from proxyctl.druid.processes import port_in_use
from proxyctl.postgres import cluster
from proxyctl.postgres.cluster import BIN_DIR, DEFAULT_PORT, Layout

_POLL_SECS = 0.2
_LOG_TAIL_LINES = 15


class StartupError(click.ClickException):
    """The server could not be initialised or started; the message says why and where its log is."""


def _cluster_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the options that pick a cluster and hand the command a `Layout`."""

    @click.option(
        "--state-dir",
        type=click.Path(path_type=Path),
        envvar="PROXY_POSTGRES_LOCAL_DIR",
        help="Data, log, pid [default: ~/.cache/reporting-proxy/postgres-local; "
        "as root /var/tmp/reporting-proxy/postgres-local].",
    )
    @click.option(
        "--port",
        type=click.IntRange(1024, 65535),
        default=DEFAULT_PORT,
        show_default=True,
        envvar="PROXY_POSTGRES_LOCAL_PORT",
        help="TCP port on 127.0.0.1.",
    )
    @functools.wraps(command)
    def wrapper(state_dir: Path | None, port: int, **kwargs: Any) -> None:
        state = (state_dir or cluster.default_state_dir()).expanduser().absolute()
        command(Layout(state, port), **kwargs)

    return wrapper


@click.group()
def postgres() -> None:
    """A real local PostgreSQL 15 (the system's package) for the shared access store."""


@postgres.command()
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for it to answer."
)
@_cluster_options
def up(layout: Layout, timeout: float) -> None:
    """Initialise the cluster if needed, start it unless running, create the database."""
    if not (BIN_DIR / "postgres").exists():
        raise StartupError(f"no {BIN_DIR / 'postgres'}: install PostgreSQL 15 (scripts/system-packages.sh)")
    record = cluster.running(layout)
    if record is not None:
        click.echo(f"already running in {layout.state_dir} (pid {record.pid})")
    else:
        _start(layout, timeout)
    if cluster.ensure_database(layout):
        click.echo(f"created database {cluster.DATABASE}")
    click.echo(f"postgres ready: {layout.url()}")
    click.echo(f"  export PROXY_ACCESS_DATABASE_URL={layout.url()}")


def _start(layout: Layout, timeout: float) -> None:
    if port_in_use(layout.port):
        raise StartupError(f"port {layout.port} already in use by another process; pick another --port")
    if not cluster.initialized(layout):
        try:
            cluster.initdb(layout)
        except RuntimeError as exc:
            raise StartupError(str(exc)) from exc
        click.echo(f"initialised {layout.data_dir}")
    record = cluster.start(layout)
    click.echo(f"started postgres pid {record.pid} port {layout.port} log {layout.log_path}")
    _wait_ready(layout, timeout)


def _wait_ready(layout: Layout, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cluster.answers(layout):
        if cluster.running(layout) is None:
            raise StartupError(f"postgres exited during start-up; log: {layout.log_path}\n{_tail(layout)}")
        if time.monotonic() > deadline:
            raise StartupError(
                f"postgres not answering after {timeout:.0f}s; log: {layout.log_path}; "
                "it keeps running: `reporting-proxy postgres down` stops it"
            )
        time.sleep(_POLL_SECS)


def _tail(layout: Layout) -> str:
    try:
        return "\n".join(layout.log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
    except OSError:
        return "(no log)"


@postgres.command()
@_cluster_options
def down(layout: Layout) -> None:
    """Stop exactly the server `up` started in this state directory."""
    outcome = cluster.stop(layout)
    click.echo(f"postgres {outcome}" if outcome else f"nothing running in {layout.state_dir}")


@postgres.command()
@_cluster_options
def status(layout: Layout) -> None:
    """Print whether the server runs, its pid, port and URL."""
    record = cluster.running(layout)
    state = "down" if record is None else ("up" if cluster.answers(layout) else "starting")
    pid = str(record.pid) if record else "-"
    click.echo(f"postgres {state:<9} pid {pid:<7} port {layout.port} {layout.url()}")
