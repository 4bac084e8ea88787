"""The service as `reporting-proxy serve` runs it by default: nginx in front of gunicorn, both
under serve's supervisor; and raw HTTP exchanges with it over loopback sockets."""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from proxy.runtime.run_dir import gunicorn_pidfile

BIN = Path(sys.executable).parent


def serve_command(port: int, *, front: bool = True, workers: int = 2, threads: int = 4) -> list[str]:
    """`reporting-proxy serve` on 127.0.0.1:`port`, with the front server or without."""
    return [
        str(BIN / "reporting-proxy"),
        "serve",
        *("--port", str(port), "--workers", str(workers), "--threads", str(threads)),
        *(() if front else ("--no-front",)),
    ]


def gunicorn_master(data_dir: Path, timeout: float = 10) -> int:
    """gunicorn's master pid, from the pid file serve has it write in the data dir."""
    path = gunicorn_pidfile(data_dir)
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no gunicorn pid file at {path}"
        time.sleep(0.05)
    return int(path.read_text().strip())


@dataclass(frozen=True)
class Answer:
    """What came back on a raw connection: the status line's code, headers and body."""

    status: int | None
    headers: dict[str, str]
    body: bytes


def exchange(port: int, raw: bytes, quiet_secs: float = 2.0, timeout: float = 20.0) -> Answer:
    """Send raw bytes and read one answer. If the server stays quiet for `quiet_secs` (an
    incomplete request waits for more), half-close so the request ends there."""
    with socket.create_connection(("127.0.0.1", port), timeout=quiet_secs) as sock:
        sock.sendall(raw)
        received = _read_answer(sock, quiet_secs, timeout)
    return _parse(received)


def _read_answer(sock: socket.socket, quiet_secs: float, timeout: float) -> bytes:
    received = b""
    half_closed = False
    deadline = time.monotonic() + timeout
    while not _complete(received) and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if half_closed or received:
                break
            sock.shutdown(socket.SHUT_WR)
            half_closed = True
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received


def _complete(received: bytes) -> bool:
    head, separator, body = received.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def _parse(received: bytes) -> Answer:
    if not received.startswith(b"HTTP/"):
        return Answer(None, {}, received)
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    # A second answer may follow (a request line hidden in the bytes after the first request).
    length = int(headers.get("Content-Length", len(body)))
    return Answer(int(status_line.split(" ", 2)[1]), headers, body[:length])
