"""Layout, initdb, start and stop of the local PostgreSQL cluster, by the pid `up` recorded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from proxyctl.detached import ProcessRecord, is_alive, start_detached

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
DEFAULT_PORT = 55432
DATABASE = "reporting"
SUPERUSER = "postgres"
# initdb and postgres refuse to run as root; as root they run as Debian's `postgres` user.
SYSTEM_USER = "postgres"
_CONNECT_TIMEOUT_SECS = 2


@dataclass(frozen=True)
class Layout:
    """Where one local cluster keeps its files, and its port."""

    state_dir: Path
    port: int = DEFAULT_PORT

    @property
    def data_dir(self) -> Path:
        """PGDATA, made by initdb."""
        return self.state_dir / "data"

    @property
    def log_path(self) -> Path:
        """The server's stdout and stderr."""
        return self.state_dir / "postgres.log"

    @property
    def pid_file(self) -> Path:
        """The postmaster `up` started (postgres's own postmaster.pid is not proof we started it)."""
        return self.state_dir / "started.json"

    def url(self, database: str = DATABASE) -> str:
        """Connection URL: trust authentication on loopback, no password."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"


def default_state_dir() -> Path:
    """~/.cache/reporting-proxy/postgres-local; as root /var/tmp, since /root is closed to `postgres`."""
    base = Path("/var/tmp") if _as_root() else Path.home() / ".cache"
    return base / "reporting-proxy" / "postgres-local"


def _as_root() -> bool:
    return os.geteuid() == 0


def _identity() -> dict[str, Any]:
    """Popen arguments that drop root to the server's user, its group and no other group."""
    if not _as_root():
        return {}
    return {"user": SYSTEM_USER, "group": SYSTEM_USER, "extra_groups": []}


def initialized(layout: Layout) -> bool:
    """Whether initdb has already made the data directory."""
    return (layout.data_dir / "PG_VERSION").exists()


def initdb(layout: Layout) -> None:
    """Make the state directory (owned by the server's user) and a cluster with trust auth."""
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    if _as_root():
        shutil.chown(layout.state_dir, SYSTEM_USER, SYSTEM_USER)
    command = [
        str(BIN_DIR / "initdb"),
        *("-D", str(layout.data_dir), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"),
        "--no-instructions",
    ]
    done = subprocess.run(command, **_identity(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def server_command(layout: Layout) -> list[str]:
    """The postmaster's command line: loopback TCP only, its socket in the state directory."""
    return [
        str(BIN_DIR / "postgres"),
        *("-D", str(layout.data_dir), "-p", str(layout.port)),
        *("-c", "listen_addresses=127.0.0.1"),
        *("-c", f"unix_socket_directories={layout.state_dir}"),
    ]


def start(layout: Layout) -> ProcessRecord:
    """Launch the postmaster detached from this terminal and record its pid."""
    record = start_detached(server_command(layout), layout.state_dir, layout.log_path, _identity())
    layout.pid_file.write_text(json.dumps({"pid": record.pid, "start_ticks": record.start_ticks}) + "\n")
    return record


def read_record(layout: Layout) -> ProcessRecord | None:
    """The postmaster recorded by the last `up` in this state directory."""
    if not layout.pid_file.exists():
        return None
    raw: dict[str, int] = json.loads(layout.pid_file.read_text())
    return ProcessRecord(**raw)


def running(layout: Layout) -> ProcessRecord | None:
    """The recorded postmaster if it still runs."""
    record = read_record(layout)
    return record if record is not None and is_alive(record) else None


def answers(layout: Layout) -> bool:
    """Whether the server accepts a connection to its maintenance database."""
    try:
        with psycopg.connect(layout.url("postgres"), connect_timeout=_CONNECT_TIMEOUT_SECS):
            return True
    except psycopg.Error:
        return False


def ensure_database(layout: Layout, name: str = DATABASE) -> bool:
    """Create the database unless it exists; whether it was created."""
    with psycopg.connect(
        layout.url("postgres"), autocommit=True, connect_timeout=_CONNECT_TIMEOUT_SECS
    ) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def stop(layout: Layout, grace_secs: float = 30.0) -> str | None:
    """Stop the recorded postmaster: SIGINT (fast shutdown: open sessions end), SIGKILL after the grace."""
    record = running(layout)
    layout.pid_file.unlink(missing_ok=True)
    if record is None:
        return None
    # SIGTERM would be a smart shutdown, which waits for every client (a pool never leaves).
    os.kill(record.pid, signal.SIGINT)
    deadline = time.monotonic() + grace_secs
    while time.monotonic() < deadline and is_alive(record):
        time.sleep(0.1)
    if not is_alive(record):
        return "stopped"
    os.kill(record.pid, signal.SIGKILL)
    return "killed"
