"""gunicorn settings for the service: `reporting-proxy serve` uses them, and so can gunicorn
directly: `gunicorn -c python:proxy.gunicorn_conf` (command-line flags override the defaults).

gunicorn's master imports this module before it forks any worker, which makes it the one place
to set `PROMETHEUS_MULTIPROC_DIR` in time: prometheus_client picks where it keeps samples when
it is first imported. Each master gets its own directory under the data dir, so an old and a
new master of a rolling restart never wipe each other's files.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from proxy.runtime.data_dir import prepare_data_dir
from proxy.runtime.limits import process_alive
from proxy.runtime.run_dir import control_socket as _control_socket
from proxy.runtime.run_dir import run_dir
from proxy.settings import SettingsError, load_settings

wsgi_app = "proxy.web.app:create_app()"
worker_class = "gthread"
workers = 2
threads = 4

_settings = load_settings()
# Before anything is made in it: 0700, and an unwritable one names PROXY_DATA_DIR.
prepare_data_dir(_settings)

# Sockets (the control socket, serve's unix socket) and worker temp files for the owner only.
umask = 0o077
# One control socket per instance, in its data dir; `--no-control-socket` turns it off.
run_dir(_settings.data_dir)
control_socket = str(_control_socket(_settings.data_dir))
# Every line JSON, credentials redacted: gunicorn's error log quotes refused request lines.
# Its access log stays off: the service writes one JSON line per request itself.
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "proxy.runtime.redact.RedactFilter"}},
    "formatters": {"json": {"()": "proxy.runtime.logs.JsonFormatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "json",
            "filters": ["redact"],
        }
    },
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
}


def _metrics_dir(root: Path) -> Path:
    """A fresh directory for this master's samples; those of dead masters are removed."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.iterdir():
        if stale.name.isdigit() and not process_alive(int(stale.name), ""):
            shutil.rmtree(stale, ignore_errors=True)
    mine = root / str(os.getpid())
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir()
    return mine


# An operator's own directory is used as it is (and cleaned by the operator).
_owned_dir = (
    None if "PROMETHEUS_MULTIPROC_DIR" in os.environ else _metrics_dir(_settings.data_dir / "prometheus")
)
if _owned_dir is not None:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_owned_dir)


def on_starting(server: Any) -> None:
    """Tell the workers how many requests the host serves at once, and check the limits fit it."""
    os.environ["PROXY_SERVING_SLOTS"] = str(server.cfg.workers * server.cfg.threads)
    try:
        load_settings()
    except SettingsError as exc:
        sys.exit(f"reporting-proxy: {exc}")


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: drop its live gauges and any concurrency slot it still held."""
    # Imported here, not at the top: the limiters import the metrics, and prometheus_client
    # must not be imported before PROMETHEUS_MULTIPROC_DIR is set (see above).
    from prometheus_client import multiprocess

    from proxy.runtime.limiters import build_limiter

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
    build_limiter(_settings).release_process(worker.pid)


def on_exit(server: Any) -> None:
    """The master stops: its samples go with it."""
    if _owned_dir is not None:
        shutil.rmtree(_owned_dir, ignore_errors=True)
