"""Slow clients on loopback: connections that send part of a request and hold it (reopened when
the server closes them), counted at the server, while other callers' requests are timed."""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_TICK_SECS = 0.2
_TRICKLE_SECS = 2.0
_ESTABLISHED = "01"
# The bytes a connection opens with, and those it sends again every trickle (b"": none).
Opening = tuple[bytes, bytes]


@dataclass
class Held:
    """One slow connection: what it opened with, when, and when it next trickles a header line."""

    sock: socket.socket
    opening: Opening
    opened: float
    next_send: float


@dataclass
class AttackFigures:
    """What the attack held: connections opened in all, the most open at the server at once,
    and how long the server let each one live before it closed it."""

    opened: int = 0
    peak_at_server: int = 0
    lifetimes: list[float] = field(default_factory=list)


def partial_header() -> Opening:
    """A request line and one header, never finished; a further header line every trickle."""
    return b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Hold: 1\r\n"


def short_body(token: str, path: str) -> Opening:
    """A valid key's POST declaring 60000 bytes and sending 10; nothing more is ever sent."""
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Token {token}\r\n"
    head += "Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n"
    return head.encode() + b'{"interval', b""


class Attack:
    """Hold `count` connections of each opening for `seconds`, reopening any the server closes."""

    def __init__(self, port: int, openings: list[tuple[Opening, int]], seconds: float) -> None:
        self.port = port
        self.openings = openings
        self.seconds = seconds
        self.figures = AttackFigures()
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def start(self) -> None:
        """Open every connection and keep them open in the background."""
        self._thread.start()

    def join(self) -> AttackFigures:
        """Wait for the attack's end (all its connections closed); its figures."""
        self._thread.join(self.seconds + 30)
        return self.figures

    def _run(self) -> None:
        held = [self._open(opening) for opening, count in self.openings for _ in range(count)]
        deadline = time.monotonic() + self.seconds
        try:
            while time.monotonic() < deadline:
                held = [self._tend(one) for one in held]
                self.figures.peak_at_server = max(self.figures.peak_at_server, established(self.port))
                time.sleep(_TICK_SECS)
        finally:
            for one in held:
                one.sock.close()

    def _open(self, opening: Opening) -> Held:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setblocking(False)
        sock.send(opening[0])
        self.figures.opened += 1
        now = time.monotonic()
        return Held(sock, opening, now, now + _TRICKLE_SECS)

    def _tend(self, one: Held) -> Held:
        """The same connection if the server still holds it; else a new one like it."""
        if _still_held(one):
            return one
        self.figures.lifetimes.append(time.monotonic() - one.opened)
        one.sock.close()
        return self._open(one.opening)


def _still_held(one: Held) -> bool:
    """Trickle if due; held while the server neither answers nor closes."""
    now = time.monotonic()
    try:
        if one.opening[1] and now >= one.next_send:
            one.sock.send(one.opening[1])
            one.next_send = now + _TRICKLE_SECS
        one.sock.recv(65536)  # an answer, or b"" for a close: either way the server let go
    except BlockingIOError:
        return True
    except OSError:
        pass  # reset by the server
    return False


def established(port: int) -> int:
    """Established TCP connections to local `port`, as the kernel counts them."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == _ESTABLISHED:
            count += 1
    return count


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def timed(call: Callable[[], int]) -> tuple[int, float]:
    """A call's result and how long it took, in seconds."""
    started = time.perf_counter()
    status = call()
    return status, time.perf_counter() - started
