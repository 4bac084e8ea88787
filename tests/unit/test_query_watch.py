"""QueryWatch on its own (one watcher thread per process), and DruidClient against a loopback
broker that stalls on purpose.

The stalling broker answers `DELETE` with 202 and records it; a `POST` either never answers,
or sends its headers and a first chunk and then nothing. Every case must end within the
budget plus a small slack, with the cancel sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest

from proxy.backends.druid.client import DruidClient
from proxy.backends.druid.watch import QueryWatch
from proxy.errors import BackendTimeout, BackendUnavailable, ClientDisconnected, ProxyError
from tests.support.forking import passes_in_forked_child
from tests.support.stub_broker import Answer, Stall, StubBroker, refused_connects, stub_broker

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
def test_watch_fires_once_cut_before_cancel(
    budget: float, gone_after: float | None, reason: str | None
) -> None:
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


def test_a_stream_attached_after_the_watch_fired_is_cut_at_once() -> None:
    calls = Calls()
    with QueryWatch(60.0, calls.record("cancel")) as watch:
        watch.expire()
        watch.attach(calls.record("cut"))
    assert sorted(calls.events) == ["cancel", "cut"]


def _watch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "druid-query-watch"]


def test_one_watcher_thread_serves_every_query() -> None:
    calls = Calls()
    with ExitStack() as stack:
        watches = [
            stack.enter_context(QueryWatch(0.05 * (i + 1), calls.record(f"cancel-{i}"), poll_secs=0.01))
            for i in range(5)
        ]
        time.sleep(0.35)
        assert len(_watch_threads()) == 1
    assert [watch.reason for watch in watches] == ["deadline"] * 5
    assert sorted(calls.events) == [f"cancel-{i}" for i in range(5)]


def test_a_slow_cancel_does_not_hold_up_other_queries() -> None:
    stuck = threading.Event()
    calls, started = Calls(), time.monotonic()
    with QueryWatch(0.05, lambda: stuck.wait(2), poll_secs=0.01, cancel_grace_secs=0.0):
        with QueryWatch(0.2, calls.record("cancel"), poll_secs=0.01) as second:
            second.attach(calls.record("cut"))
            time.sleep(0.3)
            assert calls.events == ["cut", "cancel"]
    stuck.set()
    assert time.monotonic() - started < 0.3 + SLACK_SECS


def test_a_forked_child_watches_with_its_own_thread() -> None:
    with QueryWatch(60.0, lambda: None):
        pass  # the parent's watcher thread runs from now on

    def cut_by_the_deadline() -> bool:
        with QueryWatch(0.05, lambda: None, poll_secs=0.01) as watch:
            time.sleep(0.3)
        return watch.reason == "deadline" and len(_watch_threads()) == 1

    assert passes_in_forked_child(cut_by_the_deadline)


@pytest.fixture(params=["before_headers", "mid_body"], ids=["stalls_before_headers", "stalls_mid_body"])
def stall(request: pytest.FixtureRequest) -> Stall:
    return request.param


@pytest.fixture
def broker(stall: Stall) -> Iterator[StubBroker]:
    with stub_broker() as stub:
        stub.on("POST", "/druid/v2/", Answer(stall=stall))
        yield stub


def _run(client: DruidClient, budget: float, gone: Callable[[], bool]) -> tuple[type[ProxyError], float]:
    started = time.monotonic()
    with pytest.raises(ProxyError) as raised:
        client.query(QUERY, budget, gone)
    return type(raised.value), time.monotonic() - started


def test_a_stalled_broker_costs_the_budget_and_gets_cancelled(broker: StubBroker) -> None:
    error, elapsed = _run(DruidClient(broker.url, 1.0), 0.6, lambda: False)
    assert error is BackendTimeout
    assert 0.6 <= elapsed < 0.6 + SLACK_SECS
    broker.wait_for("DELETE /druid/v2/q-1")
    assert broker.lines() == ["POST /druid/v2/", "DELETE /druid/v2/q-1"]


def test_a_caller_hanging_up_cancels_at_once(broker: StubBroker, stall: Stall) -> None:
    started = time.monotonic()
    gone = lambda: time.monotonic() - started > 0.2  # noqa: E731
    error, elapsed = _run(DruidClient(broker.url, 1.0), 0.8, gone)
    assert error is ClientDisconnected
    assert broker.wait_for("DELETE /druid/v2/q-1").at - started < 0.2 + SLACK_SECS
    # Mid-body the stream is cut and the worker is free at once. Before any header only
    # Druid's answer to the cancel frees it, and this broker never answers: the budget does.
    assert elapsed < (0.2 if stall == "mid_body" else 0.8) + SLACK_SECS


def test_a_refused_connection_is_unavailable_at_once() -> None:
    with refused_connects() as url:
        error, elapsed = _run(DruidClient(url, 1.0), 5.0, lambda: False)
    assert (error, elapsed < 0.5) == (BackendUnavailable, True)
