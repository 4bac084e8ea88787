"""Run nginx in front of gunicorn, in the foreground, as one unit: both start, both stop.

SIGTERM or SIGINT stops both (nginx first, gracefully, while gunicorn still answers what it
holds; then gunicorn); SIGHUP is passed to both (each reloads). If either exits on its own,
the other is stopped and the supervisor exits non-zero.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from proxy.runtime.logs import JsonFormatter
from proxyctl.front.config import FrontConfig, render
from proxyctl.front.log_lines import json_line

log = logging.getLogger("proxyctl.front")
_POLL_SECS = 0.2
_PR_SET_PDEATHSIG = 1
# nginx needs these as temp paths even when nothing is ever proxied over FastCGI and friends.
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class FrontError(RuntimeError):
    """The front server cannot be started (no nginx, the data dir held by another serve)."""


@dataclass
class Child:
    """One supervised process and the signal that stops it gracefully."""

    name: str
    process: subprocess.Popen[bytes]
    stop_signal: signal.Signals
    stop_secs: float

    def stop(self) -> None:
        """Ask it to stop, wait its grace period, then kill it."""
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout=self.stop_secs)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s: killed", self.name, self.stop_secs)
            self.process.kill()
            self.process.wait()
        self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        # A master killed outright leaves its workers behind (nginx's keep the port bound),
        # and they are all in the group the master leads.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def nginx_binary() -> str:
    """The nginx executable (PATH, then /usr/sbin), or FrontError saying how to get one."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise FrontError(
            "nginx not found: install it (scripts/system-packages.sh as root, or "
            "`apt-get install nginx-light`), or run `reporting-proxy serve --no-front` behind a "
            "buffering proxy of your own (docs/serving.md)"
        )
    return found


def nginx_command(binary: str, config_path: Path, run_dir: Path) -> list[str]:
    """nginx in the foreground on the rendered config; start-up errors to stderr (nginx >= 1.19.5)."""
    return [binary, "-p", str(run_dir), "-c", str(config_path), "-e", "stderr"]


def serve_with_front(front: FrontConfig, gunicorn: Sequence[str], gunicorn_stop_secs: float) -> int:
    """Run nginx and gunicorn until a signal or until one of them exits; the exit status."""
    binary = nginx_binary()
    _configure_log()
    with _exclusive(front.run_dir):
        config_path = _write_config(front)
        nginx = Child(
            "nginx",
            _spawn(nginx_command(binary, config_path, front.run_dir), stderr=subprocess.PIPE),
            signal.SIGQUIT,
            front.upstream_timeout_secs + 5,
        )
        app = Child("gunicorn", _spawn(gunicorn, stderr=None), signal.SIGTERM, gunicorn_stop_secs)
        relay = _relay_lines(nginx.process.stderr)
        status = _supervise(nginx, app)
        relay.join(timeout=2)  # nginx's last lines, up to its exit
        return status


def _configure_log() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


@contextlib.contextmanager
def _exclusive(run_dir: Path) -> Iterator[None]:
    """Hold the run directory: a second serve on the same data dir would take over its sockets."""
    with (run_dir / "serve.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise FrontError(f"another `reporting-proxy serve` is running on {run_dir.parent}") from exc
        yield


def _write_config(front: FrontConfig) -> Path:
    for name in _TEMP_DIRS:
        (front.run_dir / "nginx" / name).mkdir(mode=0o700, parents=True, exist_ok=True)
    path = front.run_dir / "nginx.conf"
    path.write_text(render(front))
    path.chmod(0o600)
    return path


def _spawn(command: Sequence[str], stderr: int | None) -> subprocess.Popen[bytes]:
    # A process group of their own: a terminal's Ctrl-C reaches the supervisor only, which
    # stops the two in order. Both die with the supervisor should it be killed outright.
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stderr=stderr,
        process_group=0,
        preexec_fn=_die_with_parent,
    )


def _die_with_parent() -> None:
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _relay_lines(stream: IO[bytes] | None) -> threading.Thread:
    """nginx's stderr, line by line, as JSON log lines on this process's stderr."""

    def relay() -> None:
        assert stream is not None
        for raw in stream:
            sys.stderr.write(json_line(raw.decode("utf-8", "replace")) + "\n")
            sys.stderr.flush()

    thread = threading.Thread(target=relay, name="nginx-log", daemon=True)
    thread.start()
    return thread


def _supervise(nginx: Child, app: Child) -> int:
    stop = threading.Event()
    children = (nginx, app)
    _install_handlers(stop, children)
    while not stop.wait(_POLL_SECS):
        exited = next((child for child in children if child.process.poll() is not None), None)
        if exited is not None:
            log.error("%s exited with status %s: stopping the other", exited.name, exited.process.returncode)
            _stop_all(children)
            return 1
    _stop_all(children)
    return 0


def _install_handlers(stop: threading.Event, children: Sequence[Child]) -> None:
    def on_stop(signum: int, frame: Any) -> None:
        stop.set()

    def on_reload(signum: int, frame: Any) -> None:
        for child in children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_reload)


def _stop_all(children: Sequence[Child]) -> None:
    # In order: nginx stops taking requests and finishes those it holds while gunicorn answers.
    for child in children:
        child.stop()
    log.info("stopped: %s", ", ".join(f"{c.name} {c.process.returncode}" for c in children))
