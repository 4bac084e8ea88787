"""`reporting-proxy serve`: gunicorn behind a buffering nginx (the default), or gunicorn alone.

The front reads every request whole, within deadlines, before gunicorn sees it, and takes every
answer whole from gunicorn before the client is written to: a slow or stalled client holds an
nginx socket, never a gunicorn thread (docs/serving.md has the model and its measurements).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from proxy.runtime.data_dir import prepare_data_dir
from proxy.runtime.run_dir import gunicorn_pidfile, gunicorn_socket, run_dir
from proxy.settings import Settings, SettingsError, load_settings
from proxyctl.front.config import FrontConfig
from proxyctl.front.supervise import FrontError, serve_with_front

# gunicorn's own request-line and header-count limits sit above the front's (4 KiB lines,
# 16 KiB of headers), so gunicorn never refuses, in HTML, a request the front passed on.
_BEHIND_FRONT = ("--limit-request-line", "8190", "--limit-request-fields", "32768")
# gunicorn's graceful stop (its default graceful_timeout), and a little more.
_GUNICORN_STOP_SECS = 35.0


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int)
# More processes and fewer threads: the service's per-request CPU holds the GIL, so threads
# mainly overlap the wait on the backend (docs/performance.md has the measurements).
@click.option("--workers", default=3, show_default=True, type=int)
@click.option("--threads", default=2, show_default=True, type=int)
@click.option(
    "--front/--no-front",
    default=True,
    show_default=True,
    help="Serve through nginx (buffering, read deadlines). --no-front: gunicorn on --host/--port "
    "directly, only for behind a buffering proxy of your own.",
)
@click.option(
    "--control-socket/--no-control-socket",
    default=True,
    show_default=True,
    help="gunicorn's control socket, in $PROXY_DATA_DIR/run/gunicorn.ctl.",
)
def serve(host: str, port: int, workers: int, threads: int, front: bool, control_socket: bool) -> None:
    """Serve the API: nginx in front of gunicorn, in the foreground, until SIGTERM or Ctrl-C."""
    # Whatever the serving processes create (sockets, pid files, data) is for their owner only.
    os.umask(0o077)
    settings = _settings(workers * threads)
    directory = _run_dir(settings)
    command = gunicorn_command(settings.data_dir, workers, threads, control_socket)
    if not front:
        os.execv(sys.executable, [*command, "--bind", f"{host}:{port}"])
    # A worker accepts only what its threads can run at once, so a request never queues inside
    # a busy worker while another has a free thread: the rest wait in the socket's backlog, their
    # budget counting from the front's X-Request-Start. The front opens one connection per request.
    per_worker = ("--worker-connections", str(threads), "--keep-alive", "0")
    upstream = [*command, *_BEHIND_FRONT, *per_worker, "--bind", f"unix:{gunicorn_socket(settings.data_dir)}"]
    try:
        status = serve_with_front(
            FrontConfig.from_settings(settings, host, port, directory), upstream, _GUNICORN_STOP_SECS
        )
    except FrontError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(status)


def gunicorn_command(data_dir: Path, workers: int, threads: int, control_socket: bool) -> list[str]:
    """gunicorn with the service's config module (metrics, limits, JSON logs), without a bind."""
    # The config module sets up multiprocess metrics, the worker-exit clean-up and JSON logs.
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:proxy.gunicorn_conf",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--pid",
        str(gunicorn_pidfile(data_dir)),
        *(() if control_socket else ("--no-control-socket",)),
        "proxy.web.app:create_app()",
    ]


def _settings(serving_slots: int) -> Settings:
    # Fail here, with the variable's name, rather than in every worker; the concurrency limits
    # are checked against the slots (gunicorn's config sets them for the workers).
    try:
        settings = load_settings(serving_slots=serving_slots)
        prepare_data_dir(settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    return settings


def _run_dir(settings: Settings) -> Path:
    try:
        return run_dir(settings.data_dir)
    except OSError as exc:
        raise click.ClickException(
            f"PROXY_DATA_DIR={settings.data_dir}: cannot create its run directory ({exc.strerror})"
        ) from exc
