"""The reporting service without Flask: access checks, explain, the answer, and the record."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from proxy.errors import (
    BadRequest,
    Forbidden,
    NotAuthenticated,
    OrganizationNotFound,
    ProxyError,
    ServiceBusy,
    TooManyRequests,
    UnsupportedMediaType,
)
from proxy.runtime.disconnect import ClientGone
from proxy.service.call import Call, Record
from proxy.service.reporting import ReportingService
from tests.support.ids import ORG, OTHER_ORG, UNKNOWN_ORG
from tests.unit.web import QUERY, StubBackend, grant_keys, settings_for

BODY = orjson.dumps(QUERY)


@dataclass
class Served:
    service: ReportingService
    backend: StubBackend
    keys: dict[str, str]

    def call(self, who: str | None = "a", org: str = ORG, body: bytes = BODY, **more: Any) -> Call:
        authorization = None if who is None else f"Token {self.keys.get(who, who)}"
        return Call(org, authorization, "req-1", time.perf_counter(), body=lambda: body, **more)

    def key_id(self, who: str) -> str:
        return "key:" + self.keys[who].split("_")[1]


@pytest.fixture
def served(tmp_path: Path) -> Served:
    settings = settings_for(tmp_path, request_timeout_secs=7.0)
    keys = grant_keys(settings)
    backend = StubBackend()
    return Served(ReportingService(settings, backend), backend, keys)


def _unread() -> bytes:
    raise AssertionError("the body was read")


@pytest.mark.parametrize(
    ("who", "org", "error", "principal"),
    [
        (None, ORG, NotAuthenticated, None),
        ("rpk_nothere_secret", ORG, NotAuthenticated, None),
        ("other", ORG, Forbidden, "other"),
        ("a", UNKNOWN_ORG, OrganizationNotFound, "a"),
        ("a", "not-a-uuid", OrganizationNotFound, "a"),
    ],
)
def test_access_is_checked_before_the_body_is_read(
    served: Served, who: str | None, org: str, error: type[ProxyError], principal: str | None
) -> None:
    record = Record("req-1", 0.0)
    call = served.call(who, org)
    with pytest.raises(error):
        served.service.visitor_sessions(replace(call, body=_unread), record)
    assert (record.principal, record.organization) == (
        principal and served.key_id(principal),
        org,
    )
    assert served.backend.scopes == []


def test_an_answer_fills_the_record(served: Served) -> None:
    record = Record("req-1", 0.0)
    answer = served.service.visitor_sessions(served.call("a", ORG.upper()), record)
    assert orjson.loads(answer.body)["fields"][0] == {"name": "timestamp", "type": "dimension"}
    assert (record.principal, record.organization, record.backend) == (served.key_id("a"), ORG, "stub")
    assert record.backend_ms is not None and record.backend_ms >= 0
    assert record.error_code is None


def test_the_scope_is_the_calls(served: Served) -> None:
    gone: ClientGone = lambda: True  # noqa: E731
    call = served.call("a", ORG.upper(), client_gone=gone)
    served.service.visitor_sessions(call, Record("req-1", call.arrived))
    (scope,) = served.backend.scopes
    assert (scope.organization_id, scope.request_id, scope.client_gone) == (ORG, "req-1", gone)
    assert scope.deadline == call.arrived + 7.0


def test_explain_runs_nothing(served: Served) -> None:
    record = Record("req-1", 0.0)
    answer = served.service.visitor_sessions(served.call(explain=True), record)
    assert orjson.loads(answer.body) == {"backend": "stub", "query": {"sql": "SELECT 1", "parameters": []}}
    assert served.backend.entered.is_set() is False
    assert (record.backend, record.backend_ms) == ("stub", None)


def test_a_body_not_declared_json_is_refused_after_access(served: Served) -> None:
    call = Call(ORG, f"Token {served.keys['a']}", "req-1", time.perf_counter(), is_json=False, body=_unread)
    with pytest.raises(UnsupportedMediaType):
        served.service.visitor_sessions(call, Record("req-1", 0.0))


def test_the_cached_query_carries_no_organization(served: Served) -> None:
    served.service.visitor_sessions(served.call("both", ORG), Record("req-1", 0.0))
    served.service.visitor_sessions(served.call("both", OTHER_ORG), Record("req-2", 0.0))
    # One validated query, each run under the organization of its own URL.
    assert [scope.organization_id for scope in served.backend.scopes] == [ORG, OTHER_ORG]
    assert served.backend.queries[0] is served.backend.queries[1]


def test_access_is_checked_even_for_a_cached_body(served: Served) -> None:
    served.service.visitor_sessions(served.call("a"), Record("req-1", 0.0))
    with pytest.raises(Forbidden):
        served.service.visitor_sessions(served.call("other"), Record("req-2", 0.0))


def test_meta_access_fills_the_record(served: Served) -> None:
    record = Record("req-1", 0.0)
    access = served.service.check_access(served.call("both", OTHER_ORG.upper(), body=b""), record)
    assert (access.principal, access.organization) == (served.key_id("both"), OTHER_ORG)
    assert (record.principal, record.organization, record.backend) == (access.principal, OTHER_ORG, None)


def test_each_backend_query_gets_a_new_unguessable_id_never_the_request_id(served: Served) -> None:
    records = [Record("dash-1", 0.0) for _ in range(2)]
    for record, who, org in zip(records, ["a", "other"], [ORG, OTHER_ORG]):
        call = replace(served.call(who, org), request_id="dash-1")
        served.service.visitor_sessions(call, record)
    ids = [scope.query_id for scope in served.backend.scopes]
    assert [scope.request_id for scope in served.backend.scopes] == ["dash-1", "dash-1"]
    assert [record.backend_query_id for record in records] == ids
    assert len(set(ids)) == 2 and all(len(query_id) == 32 for query_id in ids)


def test_a_budget_spent_queueing_is_refused_before_anything_runs(served: Served) -> None:
    call = replace(served.call("a", body=b"{}"), arrived=time.perf_counter() - 7.0)
    record = Record("req-1", call.arrived)
    with pytest.raises(ServiceBusy):
        served.service.visitor_sessions(call, record)
    assert (record.principal, served.backend.scopes) == (None, [])


def test_invalid_bodies_are_charged_until_the_credential_gets_429_unread(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, rate_limit_invalid_per_principal_per_min=3)
    keys = grant_keys(settings)
    served = Served(ReportingService(settings, StubBackend()), StubBackend(), keys)
    outcomes = [_outcome(served, served.call("a", body=b"{}")) for _ in range(3)]
    assert outcomes == [BadRequest] * 3
    # The budget is spent: even a valid body is refused, unread, and another key is untouched.
    assert _outcome(served, replace(served.call("a"), body=_unread)) is TooManyRequests
    assert _outcome(served, served.call("b")) is None


def _outcome(served: Served, call: Call) -> type[ProxyError] | None:
    try:
        served.service.visitor_sessions(call, Record(call.request_id, call.arrived))
    except ProxyError as exc:
        return type(exc)
    return None


@pytest.mark.parametrize(("concurrent_per_org", "held"), [(5, 3), (2, 2), (1, 1)])
def test_a_report_of_several_queries_holds_a_slot_for_each_it_runs_at_once(
    tmp_path: Path, concurrent_per_org: int, held: int
) -> None:
    # The rows, the comparison's rows and the totals: three backend queries, as many slots as
    # are free (at least the one it was admitted on), and never more running than slots held.
    settings = settings_for(
        tmp_path, max_concurrent_per_org=concurrent_per_org, max_concurrent_per_principal=0
    )
    keys = grant_keys(settings)
    seen: list[int] = []

    class Counting(StubBackend):
        def execute(self, plan: Any, scope: Any) -> Any:
            seen.append(service.limiter.slots_held(ORG))
            return super().execute(plan, scope)

        def totals(self, plan: Any, scope: Any) -> Any:
            seen.append(service.limiter.slots_held(ORG))
            return super().totals(plan, scope)

    service = ReportingService(settings, Counting())
    served = Served(service, service.backend, keys)  # type: ignore[arg-type]
    body = orjson.dumps({**QUERY, "totals": True, "compare": "previous_period"})
    answer = service.visitor_sessions(served.call(body=body), Record("req-1", 0.0))
    assert set(orjson.loads(answer.body)) == {"fields", "data", "totals", "comparison"}
    assert seen == [held] * 3
    assert service.limiter.slots_held(ORG) == 0
