"""DruidClient's connections: kept alive across queries, never reused half-read, never cut for another query."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import orjson
import pytest

from proxy.backends.druid.client import DruidClient
from proxy.backends.druid.watch import QueryWatch
from proxy.errors import BackendError, BackendTimeout, BackendUnavailable, ClientDisconnected, ProxyError
from tests.support.forking import passes_in_forked_child
from tests.support.stub_broker import Answer, StubBroker, refused_connects, stub_broker

ROWS = [{"timestamp": "2019-01-01T00:00:00.000Z", "result": {"count": 1}}]
QUERY = {"queryType": "timeseries", "context": {"queryId": "q-1"}}


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    with stub_broker() as stub:
        stub.on("POST", "/druid/v2/", Answer.json(ROWS))
        yield stub


@pytest.fixture
def cuts(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[], None]]:
    """Every cut the client attaches to a watch, in order, for a test to call late."""
    attached: list[Callable[[], None]] = []
    attach = QueryWatch.attach

    def recording(watch: QueryWatch, cut: Callable[[], None]) -> None:
        attached.append(cut)
        attach(watch, cut)

    monkeypatch.setattr(QueryWatch, "attach", recording)
    return attached


def _ports(broker: StubBroker) -> list[int]:
    return [request.client_port for request in broker.received]


def test_queries_share_one_kept_alive_connection(broker: StubBroker) -> None:
    client = DruidClient(broker.url, 1.0)
    assert [client.query(QUERY, 1.0) for _ in range(3)] == [ROWS] * 3
    assert len(set(_ports(broker))) == 1


def test_a_cut_connection_is_not_reused(broker: StubBroker) -> None:
    client = DruidClient(broker.url, 1.0)
    broker.on("POST", "/druid/v2/", Answer(stall="mid_body"))
    with pytest.raises(ClientDisconnected):
        client.query(QUERY, 1.0, lambda: True)
    broker.on("POST", "/druid/v2/", Answer.json(ROWS))
    assert client.query(QUERY, 1.0) == ROWS
    first, _cancel, second = _ports(broker)
    assert first != second


def test_a_cut_after_the_answer_spares_the_next_query_on_that_connection(
    broker: StubBroker, cuts: list[Callable[[], None]]
) -> None:
    client = DruidClient(broker.url, 1.0)
    client.query(QUERY, 1.0)
    broker.on("POST", "/druid/v2/", Answer(stall="mid_body"))
    outcome: list[type[ProxyError]] = []
    second = threading.Thread(target=lambda: outcome.append(_error(client, 0.5)))
    second.start()
    while len(cuts) < 2:  # the second query streams on the same connection
        time.sleep(0.01)
    cuts[0]()  # the first query's watch firing late
    second.join()
    assert outcome == [BackendTimeout]  # its own deadline, not the late cut, ended it
    assert len(set(_ports(broker)[:2])) == 1


def test_a_cut_while_idle_in_the_pool_makes_the_next_query_reconnect(
    broker: StubBroker, cuts: list[Callable[[], None]]
) -> None:
    client = DruidClient(broker.url, 1.0)
    client.query(QUERY, 1.0)
    cuts[0]()
    assert client.query(QUERY, 1.0) == ROWS
    first, second = _ports(broker)
    assert first != second


def test_a_forked_child_connects_afresh(broker: StubBroker) -> None:
    client = DruidClient(broker.url, 1.0)
    client.query(QUERY, 1.0)
    assert passes_in_forked_child(lambda: client.query(QUERY, 1.0) == ROWS)
    parent, child = _ports(broker)
    assert parent != child


CUT_OFF_ROWS = b'[[1547472540000,"mobile",1],[1547472780000,"mob'


@pytest.mark.parametrize(
    ("answer", "druid_timeout_ms", "error"),
    [
        (Answer(200, CUT_OFF_ROWS, delay_secs=0.1), 50, BackendTimeout),
        (Answer(200, CUT_OFF_ROWS), 1000, BackendError),
        (Answer(200, orjson.dumps(ROWS), delay_secs=0.1, truncate_at=20), 50, BackendTimeout),
        (Answer(200, orjson.dumps(ROWS), truncate_at=20), 1000, BackendUnavailable),
    ],
    ids=["cut_off_after_druid_timeout", "cut_off_before", "dropped_after_druid_timeout", "dropped_before"],
)
def test_a_200_cut_short_past_the_druid_timeout_is_that_timeout(
    broker: StubBroker, answer: Answer, druid_timeout_ms: int, error: type[ProxyError]
) -> None:
    # Druid times a query out mid-stream by ending a 200 early (seen on 33.0.0 in ~1 try of 5
    # with a 142 ms timeout): only the clock says the cut-off body was its timeout.
    broker.on("POST", "/druid/v2/", answer)
    query = {**QUERY, "context": {"queryId": "q-1", "timeout": druid_timeout_ms}}
    with pytest.raises(ProxyError) as raised:
        DruidClient(broker.url, 1.0).query(query, 2.0)
    assert type(raised.value) is error
    if error is BackendTimeout:
        broker.wait_for("DELETE /druid/v2/q-1")
    else:
        assert broker.lines() == ["POST /druid/v2/"]


@pytest.mark.parametrize(("status", "ready"), [(200, True), (503, False)])
def test_ready_is_the_readiness_status(broker: StubBroker, status: int, ready: bool) -> None:
    broker.on("GET", "/druid/broker/v1/readiness", Answer(status, b""))
    assert DruidClient(broker.url, 1.0).ready() is ready


def test_an_unreachable_broker_is_not_ready() -> None:
    with refused_connects() as url:
        assert DruidClient(url, 1.0).ready() is False


def test_a_path_in_the_broker_url_prefixes_every_call(broker: StubBroker) -> None:
    broker.on("POST", "/proxied/druid/v2/", Answer.json(ROWS))
    assert DruidClient(broker.url + "/proxied/", 1.0).query(QUERY, 1.0) == ROWS


def test_an_https_broker_url_speaks_tls(broker: StubBroker) -> None:
    # The stub speaks plain HTTP, so the handshake fails: proof the client tried TLS.
    assert _error(DruidClient(broker.url.replace("http:", "https:"), 1.0), 1.0) is BackendUnavailable
    assert broker.received == []


def _error(client: DruidClient, budget: float) -> type[ProxyError]:
    with pytest.raises(ProxyError) as raised:
        client.query(QUERY, budget)
    return type(raised.value)
