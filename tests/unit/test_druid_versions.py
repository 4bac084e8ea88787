"""Druid's data version: conditional native queries, the ETags of an answer's queries recorded
(from any thread of the request), a stored answer revalidated with 304s."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import orjson
import pytest

from proxy.backends.base import Scope
from proxy.backends.druid.client import DruidClient
from proxy.backends.druid.conditional import NO_TAG, Answered, canonical_native
from proxy.backends.druid.versions import DruidVersions
from tests.support.stub_broker import Answer, StubBroker, stub_broker

ROWS = [{"timestamp": "2019-01-01T00:00:00.000Z", "result": {"count": 1}}]
TAG = "npHogR3ovjPzBzguCxEwByn3xPQ="


def _native(query_id: str, granularity: str = "day") -> dict[str, object]:
    return {
        "queryType": "timeseries",
        "granularity": granularity,
        "context": {"queryId": query_id, "timeout": 9},
    }


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    with stub_broker() as stub:
        stub.on("POST", "/druid/v2/", Answer(200, orjson.dumps(ROWS), etag=TAG))
        yield stub


def _scope() -> Scope:
    return Scope.starting_now("org", "request", 5.0)


def test_a_conditional_query_is_rows_and_their_etag_or_a_304(broker: StubBroker) -> None:
    client = DruidClient(broker.url, 1.0)
    assert client.conditional_query(_native("q"), 1.0, lambda: False, NO_TAG) == Answered(ROWS, TAG)
    broker.on("POST", "/druid/v2/", Answer(304, b""))
    assert client.conditional_query(_native("q"), 1.0, lambda: False, TAG) == Answered(None, TAG)
    assert [request.if_none_match for request in broker.received] == [NO_TAG, TAG]


def test_an_unconditional_query_sends_no_if_none_match(broker: StubBroker) -> None:
    assert DruidClient(broker.url, 1.0).query(_native("q"), 1.0) == ROWS
    assert broker.received[0].if_none_match is None


def test_the_query_id_is_not_part_of_a_stored_query() -> None:
    assert canonical_native(_native("a")) == canonical_native(_native("b"))
    assert canonical_native(_native("a")) != canonical_native(_native("a", "hour"))


def test_every_query_of_a_request_is_recorded_whichever_thread_sends_it(broker: StubBroker) -> None:
    client = DruidClient(broker.url, 1.0)
    versions, scope = DruidVersions(client, "ds"), _scope()
    with versions.recording(None, scope) as recording:
        client.query(_native(scope.query_id, "hour"), 1.0)
        part = threading.Thread(target=client.query, args=(_native(f"{scope.query_id}-totals", "all"), 1.0))
        part.start()
        part.join()
    client.query(_native("another-request"), 1.0)  # not this answer's
    assert recording.validators() == tuple(
        sorted((canonical_native(_native("x", granularity)), TAG) for granularity in ("hour", "all"))
    )
    assert [request.if_none_match for request in broker.received] == [NO_TAG, NO_TAG, None]


def test_an_answer_whose_query_carried_no_etag_cannot_be_kept(broker: StubBroker) -> None:
    broker.on("POST", "/druid/v2/", Answer.json(ROWS))  # a real-time segment: Druid gives no tag
    client = DruidClient(broker.url, 1.0)
    scope = _scope()
    with DruidVersions(client, "ds").recording(None, scope) as recording:
        client.query(_native(scope.query_id), 1.0)
    assert recording.validators() is None


def test_an_answer_whose_queries_went_unrecorded_is_not_kept(broker: StubBroker) -> None:
    client = DruidClient(broker.url, 1.0)
    with DruidVersions(client, "ds").recording(None, _scope()) as recording:
        client.query(_native("a-part-sent-under-another-id"), 1.0)
    assert recording.validators() is None


def test_a_check_is_current_when_every_query_is_a_304(broker: StubBroker) -> None:
    broker.on("POST", "/druid/v2/", Answer(304, b""))
    versions = DruidVersions(DruidClient(broker.url, 1.0), "ds")
    validators = ((canonical_native(_native("x")), TAG), (canonical_native(_native("x", "all")), TAG))
    scope = _scope()
    assert versions.check(validators, scope).current
    assert [(r.if_none_match, r.json()["context"]["queryId"]) for r in broker.received] == [
        (TAG, scope.query_id)
    ] * 2


def test_a_changed_query_answers_once_and_its_rows_are_used_without_asking_again(broker: StubBroker) -> None:
    client = DruidClient(broker.url, 1.0)
    versions = DruidVersions(client, "ds")
    check = versions.check(((canonical_native(_native("x")), "an older tag"),), _scope())
    assert (check.current, len(broker.received)) == (False, 1)
    scope = _scope()
    with versions.recording(check.fresh, scope) as recording:
        assert client.query(_native(scope.query_id), 1.0) == ROWS
    assert len(broker.received) == 1
    assert recording.validators() == ((canonical_native(_native("x")), TAG),)
