"""QueryWatch on its own, and DruidClient against a loopback broker that stalls on purpose.

The stalling broker answers `DELETE` with 202 and records it; a `POST` either never answers,
or sends its headers and a first chunk and then nothing. Every case must end within the
budget plus a small slack, with the cancel sent.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from proxy.backends.druid.client import DruidClient
from proxy.backends.druid.watch import QueryWatch
from proxy.errors import BackendTimeout, BackendUnavailable, ClientDisconnected, ProxyError

SLACK_SECS = 0.5
QUERY = {"queryType": "timeseries", "context": {"queryId": "q-1"}}


@dataclass
class Calls:
    events: list[str] = field(default_factory=list)

    def record(self, name: str) -> Callable[[], None]:
        return lambda: self.events.append(name)


@pytest.mark.parametrize(
    ("budget", "gone_after", "reason"),
    [(0.1, None, "deadline"), (5.0, 0.1, "disconnected"), (5.0, None, None)],
    ids=["deadline", "client_gone", "finished_in_time"],
)
def test_watch_fires_once_cut_before_cancel(budget: float, gone_after: float | None, reason: str | None) -> None:
    calls, started = Calls(), time.monotonic()
    gone = (lambda: time.monotonic() - started > gone_after) if gone_after else (lambda: False)
    with QueryWatch(budget, calls.record("cancel"), gone, poll_secs=0.01) as watch:
        watch.attach(calls.record("cut"))
        time.sleep(0.3)
    assert watch.reason == reason
    assert calls.events == (["cut", "cancel"] if reason else [])


def test_a_finished_call_is_not_cancelled_by_the_clock_but_still_by_expire() -> None:
    calls = Calls()
    with QueryWatch(0.05, calls.record("cancel"), poll_secs=0.01) as watch:
        assert watch.finish() is None
        time.sleep(0.2)
        assert (watch.reason, calls.events) == (None, [])
        watch.expire()  # Druid's own 504 arrives in a complete body
    assert (watch.reason, calls.events) == ("deadline", ["cancel"])


def test_expire_fires_at_once_and_only_once() -> None:
    calls = Calls()
    with QueryWatch(60.0, calls.record("cancel")) as watch:
        watch.expire()
        watch.expire()
    assert (watch.reason, calls.events) == ("deadline", ["cancel"])


@dataclass
class StallingBroker:
    """A loopback HTTP server: POST stalls (`headers_first` or not), DELETE gets 202."""

    headers_first: bool
    requests: list[str] = field(default_factory=list)
    delete_at: list[float] = field(default_factory=list)

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            head = conn.recv(65536).decode("latin-1")
            self.requests.append(head.split("\r\n", 1)[0])
            if head.startswith("DELETE"):
                self.delete_at.append(time.monotonic())
                conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                return
            if self.headers_first:
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\n")
            conn.settimeout(10)
            try:
                while conn.recv(65536):  # b"" once the client cuts the connection
                    pass
            except OSError:
                pass


@pytest.fixture(params=[False, True], ids=["stalls_before_headers", "stalls_mid_body"])
def broker(request: pytest.FixtureRequest) -> Iterator[tuple[str, StallingBroker]]:
    stalling = StallingBroker(headers_first=request.param)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=stalling.serve, args=(listener,), daemon=True).start()
        host, port = listener.getsockname()
        yield f"http://{host}:{port}", stalling


def _run(client: DruidClient, budget: float, gone: Callable[[], bool]) -> tuple[type[ProxyError], float]:
    started = time.monotonic()
    with pytest.raises(ProxyError) as raised:
        client.query(QUERY, budget, gone)
    return type(raised.value), time.monotonic() - started


def test_a_stalled_broker_costs_the_budget_and_gets_cancelled(broker: tuple[str, StallingBroker]) -> None:
    url, stalling = broker
    error, elapsed = _run(DruidClient(url, 1.0), 0.6, lambda: False)
    assert error is BackendTimeout
    assert 0.6 <= elapsed < 0.6 + SLACK_SECS
    assert stalling.requests == ["POST /druid/v2/ HTTP/1.1", "DELETE /druid/v2/q-1 HTTP/1.1"]


def test_a_caller_hanging_up_cancels_at_once(broker: tuple[str, StallingBroker]) -> None:
    url, stalling = broker
    started = time.monotonic()
    gone = lambda: time.monotonic() - started > 0.2  # noqa: E731
    error, elapsed = _run(DruidClient(url, 1.0), 1.5, gone)
    assert error is ClientDisconnected
    assert stalling.delete_at[0] - started < 0.2 + SLACK_SECS
    # Mid-body the stream is cut and the worker is free at once. Before any header only
    # Druid's answer to the cancel frees it, and this broker never answers: the budget does.
    assert elapsed < (0.2 if stalling.headers_first else 1.5) + SLACK_SECS


def test_a_refused_connection_is_unavailable_at_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        host, port = listener.getsockname()
    error, elapsed = _run(DruidClient(f"http://{host}:{port}", 1.0), 5.0, lambda: False)
    assert (error, elapsed < 0.5) == (BackendUnavailable, True)
