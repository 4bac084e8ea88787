"""The server layer's private directory, `$PROXY_DATA_DIR/run`: sockets, pid files, the front's config."""

from __future__ import annotations

from pathlib import Path

RUN_DIR_MODE = 0o700


def run_dir(data_dir: Path) -> Path:
    """`data_dir/run`, created if needed and readable by its owner only (its sockets take requests)."""
    path = data_dir / "run"
    path.mkdir(mode=RUN_DIR_MODE, parents=True, exist_ok=True)
    path.chmod(RUN_DIR_MODE)
    return path


def control_socket(data_dir: Path) -> Path:
    """This instance's gunicorn control socket (`gunicornc -s PATH`), never one shared per user."""
    return data_dir / "run" / "gunicorn.ctl"


def gunicorn_socket(data_dir: Path) -> Path:
    """The unix socket gunicorn listens on behind the front server."""
    return data_dir / "run" / "gunicorn.sock"


def gunicorn_pidfile(data_dir: Path) -> Path:
    """gunicorn's master pid, written by gunicorn when `serve` starts it."""
    return data_dir / "run" / "gunicorn.pid"
