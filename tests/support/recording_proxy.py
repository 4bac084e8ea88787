"""A recording TCP proxy on loopback in front of a Druid broker, for the soak runs' fault cases."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_REQUEST_LINE = re.compile(rb"(GET|POST|DELETE) (/\S*) HTTP/1\.1\r\n")
_QUERY_ID = re.compile(rb'"queryId":"([^"]+)"')
_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")
_TAIL = 64  # bytes kept between reads, so a line split across two reads is still seen


@dataclass(frozen=True)
class Seen:
    """One thing the proxy saw: what, on which connection, when (time.monotonic())."""

    at: float
    connection: int
    kind: str  # "request", "query_id", "status", "closed"
    value: str


class RecordingProxy:
    """A TCP proxy on loopback in front of the broker that notes request lines, Druid query ids,
    response status lines and connection closes, each with its time. It changes no byte; it
    can hold back the broker's answer to the next query for `hold_next` seconds, so a slow
    broker does not depend on how fast this machine is. The service names its Druid queries
    itself (never by the caller's request id), so tests find a query as the first one after a
    `mark()`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.seen: list[Seen] = []
        self.on_query: Callable[[str], None] | None = None
        self.hold_next: float | None = None
        self._held_until: dict[int, float] = {}
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        threading.Thread(target=self._accept, name="recording-proxy", daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def mark(self) -> int:
        """A position in what was seen, for `first_after`."""
        return len(self.seen)

    def first_after(self, mark: int, kind: str, timeout: float) -> Seen | None:
        """The first event of `kind` seen after `mark`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((s for s in self.seen[mark:] if s.kind == kind), None)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def wait_for(self, kind: str, value: str, timeout: float) -> Seen | None:
        """The first matching event, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((s for s in list(self.seen) if (s.kind, s.value) == (kind, value)), None)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def answer_to(self, request: Seen, timeout: float) -> Seen | None:
        """The broker's status line, or the close, that ended `request` on its connection."""
        deadline = time.monotonic() + timeout
        while True:
            ends = [
                s
                for s in list(self.seen)
                if s.connection == request.connection
                and s.at >= request.at
                and s.kind in ("status", "closed")
            ]
            if ends or time.monotonic() > deadline:
                return ends[0] if ends else None
            time.sleep(0.01)

    def _note(self, connection: int, kind: str, value: str) -> None:
        self.seen.append(Seen(time.monotonic(), connection, kind, value))
        if kind == "query_id" and self.hold_next is not None:
            self._held_until[connection] = time.monotonic() + self.hold_next
            self.hold_next = None
        if kind == "query_id" and self.on_query is not None:
            self.on_query(value)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._connections += 1
                number = self._connections
            threading.Thread(target=self._bridge, args=(client, number), daemon=True).start()

    def _bridge(self, client: socket.socket, number: int) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        done = threading.Event()
        threading.Thread(target=self._pump, args=(upstream, client, number, False, done), daemon=True).start()
        self._pump(client, upstream, number, True, done)

    def _pump(
        self, source: socket.socket, sink: socket.socket, number: int, outbound: bool, done: threading.Event
    ) -> None:
        tail = b""
        try:
            while chunk := source.recv(65536):
                # Scan before forwarding: a hold must be set before the answer can arrive.
                tail = self._scan(tail, chunk, number, outbound)
                if not outbound:
                    time.sleep(max(0.0, self._held_until.get(number, 0.0) - time.monotonic()))
                sink.sendall(chunk)
        except OSError:
            pass
        if not done.is_set():
            done.set()
            self._note(number, "closed", "client" if outbound else "upstream")
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _scan(self, tail: bytes, chunk: bytes, number: int, outbound: bool) -> bytes:
        window = tail + chunk
        patterns = (
            ((_REQUEST_LINE, "request"), (_QUERY_ID, "query_id")) if outbound else ((_STATUS_LINE, "status"),)
        )
        for pattern, kind in patterns:
            for match in pattern.finditer(window):
                if match.end() > len(tail):
                    value = b" ".join(g for g in match.groups()).decode("latin-1")
                    self._note(number, kind, value)
        return window[-_TAIL:]
