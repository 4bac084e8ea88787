"""`reporting-proxy serve`: run the service under gunicorn."""

from __future__ import annotations

import os
import sys

import click

from proxy.settings import SettingsError, load_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
# More processes and fewer threads: the service's per-request CPU holds the GIL, so threads
# mainly overlap the wait on the backend (docs/performance.md has the measurements).
@click.option("--workers", default=3, show_default=True, type=int)
@click.option("--threads", default=2, show_default=True, type=int)
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the API with gunicorn (replaces this process)."""
    try:
        load_settings()  # fail here, with the variable's name, rather than in every worker
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    # The config module sets up multiprocess metrics and the worker-exit clean-up; the
    # service writes its own JSON access line, so gunicorn's access log stays off.
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:proxy.gunicorn_conf",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "proxy.web.app:create_app()",
    ]
    os.execv(sys.executable, args)
