"""A Druid broker stand-in on a loopback port: canned answers and faults over real sockets.

`POST`s and `GET`s get the `Answer` set for their path (404 if none); a `DELETE` gets 202 like
a cancel on a real broker. Every request is recorded, with its arrival time and the client's
port, so a test can tell which connection carried it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import orjson

Stall = Literal["no", "before_headers", "mid_body"]


@dataclass(frozen=True)
class Answer:
    """What the stub does with a request."""

    status: int = 200
    body: bytes = b"[]"
    content_type: str = "application/json"
    delay_secs: float = 0.0  # before the status line
    truncate_at: int | None = None  # bytes of `body` sent (Content-Length says all) before closing
    stall: Stall = "no"  # hold the connection, before or after a first chunk, until the client leaves
    etag: str | None = None  # sent as `ETag`, as Druid does to a conditional query
    # With `etag`: a query whose If-None-Match is that tag gets 304 and no body, as Druid answers.
    revalidates: bool = False

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Answer:
        return cls(status, orjson.dumps(payload))


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    body: bytes
    client_port: int
    at: float
    if_none_match: str | None = None

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}"

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class StubBroker:
    url: str = ""
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def on(self, method: str, path: str, answer: Answer) -> None:
        self.answers[(method, path)] = answer

    def lines(self) -> list[str]:
        return [request.line for request in self.received]

    def query_ids(self) -> list[str]:
        """The `queryId` of each query posted, in arrival order."""
        return [
            request.json()["context"]["queryId"]
            for request in self.received
            if request.line == "POST /druid/v2/"
        ]

    def wait_for(self, line: str, timeout: float = 2.0) -> Received:
        """The first request with this `METHOD /path`, once it has arrived."""
        with self._arrived:
            assert self._arrived.wait_for(lambda: line in self.lines(), timeout), f"no {line}: {self.lines()}"
            return self.received[self.lines().index(line)]

    def record(self, request: Received) -> None:
        with self._arrived:
            self.received.append(request)
            self._arrived.notify_all()

    def answer_for(self, method: str, path: str) -> Answer:
        if method == "DELETE":
            return self.answers.get((method, path), Answer(202, b""))
        return self.answers.get((method, path), Answer(404, b"no such path", "text/plain"))


class _Server(ThreadingHTTPServer):
    broker: StubBroker


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like Druid's Jetty
    # Headers and body go out in two writes: with Nagle on, the body waits for the client's
    # delayed ACK of the headers (40 ms a request).
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._answer()

    do_POST = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows the test's own output on failure."""

    def _answer(self) -> None:
        broker = self.server.broker
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        sent = Received(
            self.command,
            self.path,
            body,
            self.client_address[1],
            time.monotonic(),
            self.headers.get("If-None-Match"),
        )
        broker.record(sent)
        answer = broker.answer_for(self.command, self.path)
        broker.stopping.wait(answer.delay_secs)
        if answer.stall == "before_headers":
            self._hold()
            return
        if answer.revalidates and answer.etag is not None and sent.if_none_match == answer.etag:
            self.send_response(304)
            self.send_header("ETag", answer.etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        if answer.etag is not None:
            self.send_header("ETag", answer.etag)
        if answer.stall == "mid_body":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"1\r\n[\r\n")
            self._hold()
            return
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body[: answer.truncate_at])
        self.close_connection = answer.truncate_at is not None

    def _hold(self) -> None:
        """Send nothing more until the client closes the connection or the test ends."""
        self.close_connection = True
        self.connection.settimeout(0.02)
        while not self.server.broker.stopping.is_set():
            try:
                if not self.connection.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return


@contextmanager
def stub_broker() -> Iterator[StubBroker]:
    """A stub serving on 127.0.0.1 until the block ends."""
    broker = StubBroker()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.broker = broker
    host, port = server.server_address[:2]
    broker.url = f"http://{host!s}:{port}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield broker
    finally:
        broker.stopping.set()
        server.shutdown()
        server.server_close()


@contextmanager
def refused_connects() -> Iterator[str]:
    """A loopback URL nobody listens on: connecting is refused at once."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        host, port = listener.getsockname()
    yield f"http://{host}:{port}"


@contextmanager
def unanswered_connects() -> Iterator[str]:
    """A loopback URL whose listen queue is full: the kernel drops every further SYN."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as hole:
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(hole.getsockname())
        try:
            host, port = hole.getsockname()
            yield f"http://{host}:{port}"
        finally:
            for filler in fillers:
                filler.close()
