"""Faults answered, not suffered: the service under gunicorn against our own real Druid.

Every case is timed from the caller's side and must end within its budget plus SLACK_SECS.
The broker is frozen, killed and restarted: only the soak cluster's (tests/support/soak.py).
A recording proxy sits in front of the broker where a test must see what reached it.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import orjson
import pytest
import requests

from tests.support.recording_proxy import RecordingProxy
from tests.support.soak import SUMMARY, Server, SoakData, post_query, serving

pytestmark = pytest.mark.soak

SLACK_SECS = 0.6
CONNECT_SECS = 1.0
# Under what a warm Druid needs for SLOW here: its requests through the service at a 0.10 s
# budget timed out 8 times in 40, at 0.08 s 40 in 40 (at 0.15 s a warm Druid finished in time).
TIGHT_SECS = 0.08
SHORT_SECS = 3.0
LONG_SECS = 20.0
LANE_CALLERS = 10
YEAR = {
    "start": "2019-01-01T00:00:00+02:00",
    "end": "2019-12-01T00:00:00+02:00",
    "time_zone": "Europe/Helsinki",
}
LIGHT = {
    "interval": {"start": "2019-06-01T00:00:00Z", "end": "2019-07-01T00:00:00Z"},
    "granularity": "day",
    "aggregations": [{"type": "count"}],
}
# 481k minute buckets grouped by device: 0.5-2 s inside Druid before its first byte (2 shared cores).
SLOW = {
    "interval": YEAR,
    "granularity": "minute",
    "group_by": ["device_type"],
    "aggregations": [{"type": "count"}],
}
FAULT_SETTINGS = {"max_buckets": "500000", "connect_timeout_secs": str(CONNECT_SECS)}

TABLE: list[str] = [f"{'case':<48} {'budget':>6}  {'answer':<26} {'time':>8}"]
SUMMARY["fault cases (status as seen by the caller; time from the caller's side)"] = TABLE


def _row(case: str, budget: float | None, outcome: str, seconds: float, note: str = "") -> None:
    limit = "-" if budget is None else f"{budget:g} s"
    if budget is not None and outcome.startswith("504"):
        note = f"{seconds - budget:+.2f} s past the budget; {note}"
    TABLE.append(f"{case:<48} {limit:>6}  {outcome:<26} {seconds:6.2f} s  {note}")


@dataclass
class Faults:
    data: SoakData
    recorder: RecordingProxy
    tight: Server  # through the recorder, budget TIGHT_SECS
    patient: Server  # through the recorder, budget LONG_SECS
    direct: Server  # straight to the broker, budget SHORT_SECS
    lane: Server  # straight to the broker in Druid lane "limited" (2 at once), budget LONG_SECS
    blackhole: Server  # a "broker" whose listen queue is full: connects never complete

    def post(
        self, service: Server, body: dict[str, object], request_id: str
    ) -> tuple[requests.Response, float]:
        return post_query(service.base_url, self.data.organization, self.data.token, body, request_id)

    def plan_ahead(self, service: Server, body: dict[str, object]) -> None:
        """Have the service plan `body` once (`?explain=true` runs nothing): plans are cached,
        so a tight budget then goes to Druid rather than to stepping 481k buckets."""
        response, _ = post_query(
            f"{service.base_url}",
            self.data.organization,
            self.data.token,
            body,
            "plan",
            params={"explain": "true"},
        )
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def faults(soak_data: SoakData) -> Iterator[Faults]:
    broker_port = int(soak_data.cluster.broker_url.rsplit(":", 1)[1])
    recorder = RecordingProxy(broker_port)
    recorder.start()
    with socket.create_server(("127.0.0.1", 0), backlog=0) as hole:
        # Fill the accept queue; the kernel then drops every further SYN.
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(hole.getsockname())
        hole_url = "http://127.0.0.1:%d" % hole.getsockname()[1]
        services = Faults(
            soak_data,
            recorder,
            soak_data.server("tight", recorder.url, request_timeout_secs=str(TIGHT_SECS), **FAULT_SETTINGS),
            soak_data.server("patient", recorder.url, request_timeout_secs=str(LONG_SECS), **FAULT_SETTINGS),
            soak_data.server("direct", request_timeout_secs=str(SHORT_SECS), **FAULT_SETTINGS),
            soak_data.server(
                "lane", druid_lane="limited", request_timeout_secs=str(LONG_SECS), **FAULT_SETTINGS
            ),
            soak_data.server("blackhole", hole_url, request_timeout_secs=str(SHORT_SECS), **FAULT_SETTINGS),
        )
        for service in (services.tight, services.patient, services.direct, services.blackhole):
            service.workers, service.threads = 1, 4
        services.lane.workers, services.lane.threads = 2, LANE_CALLERS // 2
        try:
            with serving(
                services.tight, services.patient, services.direct, services.lane, services.blackhole
            ):
                yield services
        finally:
            recorder.close()
            for filler in fillers:
                filler.close()


def _code(response: requests.Response) -> str:
    return (
        f"{response.status_code} {response.json().get('code', '') if response.status_code != 200 else 'ok'}"
    )


def test_healthy_baseline(faults: Faults) -> None:
    light, light_secs = faults.post(faults.direct, LIGHT, "base-light")
    slow, slow_secs = faults.post(faults.patient, SLOW, "base-slow")
    _row("healthy: light query", SHORT_SECS, _code(light), light_secs)
    _row(
        "healthy: the slow query (481k minute buckets)",
        LONG_SECS,
        _code(slow),
        slow_secs,
        f"{len(slow.json()['data'])} rows",
    )
    assert (light.status_code, slow.status_code) == (200, 200)


def test_druid_over_capacity_is_503_overloaded(faults: Faults) -> None:
    # Lane "limited" admits 2 queries at once; the broker refuses the rest with 429.
    with ThreadPoolExecutor(LANE_CALLERS) as pool:
        answers = list(pool.map(lambda i: faults.post(faults.lane, SLOW, f"lane-{i}"), range(LANE_CALLERS)))
    codes = sorted(_code(response) for response, _ in answers)
    overloaded = [r for r, _ in answers if r.status_code == 503]
    _row(
        f"Druid over capacity: {LANE_CALLERS} at once in a lane of 2",
        LONG_SECS,
        f"{codes.count('200 ok')}x200 {len(overloaded)}x503",
        max(s for _, s in answers),
        "backend_overloaded",
    )
    assert set(codes) <= {"200 ok", "503 backend_overloaded"}
    assert overloaded and all(r.headers.get("Retry-After") == "2" for r in overloaded)
    assert codes.count("200 ok") >= 1


@pytest.mark.parametrize(
    ("case", "body", "held"),
    [("query over its deadline (Druid slow)", SLOW, 0.0), ("broker answers after the deadline", LIGHT, 10.0)],
    ids=["druid_slow", "answer_held"],
)
def test_deadline_is_504_and_druid_is_told_to_cancel(
    faults: Faults, case: str, body: dict[str, object], held: float
) -> None:
    faults.plan_ahead(faults.tight, body)
    mark = faults.recorder.mark()
    faults.recorder.hold_next = held or None
    response, seconds = faults.post(faults.tight, body, f"deadline-{int(held)}")
    query = faults.recorder.first_after(mark, "query_id", timeout=2)
    assert query is not None, "the query never reached Druid"
    cancel = faults.recorder.wait_for("request", f"DELETE /druid/v2/{query.value}", timeout=2)
    answer = faults.recorder.answer_to(cancel, timeout=2) if cancel else None
    _row(
        case,
        TIGHT_SECS,
        _code(response),
        seconds,
        f"DELETE reached the broker, answered {answer.value if answer else 'NOTHING'}",
    )
    assert (response.status_code, response.json().get("code")) == (504, "backend_timeout")
    assert seconds < TIGHT_SECS + SLACK_SECS
    assert answer is not None and answer.value == "202"


def test_caller_hanging_up_cancels_the_druid_query(faults: Faults) -> None:
    body = orjson.dumps(SLOW)
    head = (
        f"POST /api/reporting/v1/orgs/{faults.data.organization}/visitor_sessions HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Token {faults.data.token}\r\nX-Request-Id: gone-1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    mark = faults.recorder.mark()
    with socket.create_connection(("127.0.0.1", faults.patient.port)) as caller:
        caller.sendall(head + body)
        post = faults.recorder.first_after(mark, "query_id", timeout=10)
        assert post is not None, "the query never reached Druid"
        time.sleep(0.05)
    hung_up = time.monotonic()
    cancel = faults.recorder.wait_for("request", f"DELETE /druid/v2/{post.value}", timeout=5)
    cancel_answer = faults.recorder.answer_to(cancel, timeout=5) if cancel else None
    query_end = faults.recorder.answer_to(post, timeout=LONG_SECS)
    _row(
        "caller hangs up 0.05 s into the Druid query",
        LONG_SECS,
        "(nobody listens) 499",
        (cancel.at - hung_up) if cancel else float("nan"),
        f"= DELETE after the hang-up, answered {cancel_answer.value if cancel_answer else 'NOTHING'}; "
        + (
            f"Druid's POST ended: {query_end.kind} {query_end.value} {query_end.at - hung_up:+.2f} s"
            if query_end
            else ""
        ),
    )
    assert cancel is not None and cancel.at - hung_up < 1.0
    assert cancel_answer is not None and cancel_answer.value == "202"
    assert _wait_for_log(faults.patient, '"status":499', timeout=5), "no 499 in the access log"


def _wait_for_log(service: Server, needle: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in service.log_text():
            return True
        time.sleep(0.1)
    return False


def test_frozen_broker_costs_the_budget_only(faults: Faults) -> None:
    # SIGSTOP: connections still complete in the kernel, nothing ever answers.
    faults.data.cluster.signal_broker(signal.SIGSTOP)
    try:
        response, seconds = faults.post(faults.direct, LIGHT, "frozen-1")
    finally:
        faults.data.cluster.signal_broker(signal.SIGCONT)
    _row("broker frozen (SIGSTOP), connect succeeds", SHORT_SECS, _code(response), seconds)
    assert (response.status_code, response.json()["code"]) == (504, "backend_timeout")
    assert SHORT_SECS <= seconds < SHORT_SECS + SLACK_SECS


def test_unreachable_broker_is_503_within_the_connect_timeout(faults: Faults) -> None:
    response, seconds = faults.post(faults.blackhole, LIGHT, "hole-1")
    _row(
        "broker unreachable (SYN dropped)",
        SHORT_SECS,
        _code(response),
        seconds,
        f"connect timeout {CONNECT_SECS:g} s",
    )
    assert (response.status_code, response.json()["code"]) == (503, "backend_unavailable")
    assert response.headers["Retry-After"] == "5"
    assert seconds < CONNECT_SECS + SLACK_SECS


def test_broker_killed_stopped_and_back(faults: Faults) -> None:
    cluster = faults.data.cluster
    # 0.05 s after the broker has the query: on a quiet machine the slow query is done in ~0.3 s.
    killer = threading.Timer(0.05, cluster.signal_broker, args=(signal.SIGKILL,))
    # The one query in flight is the slow one: the first the recorder sees starts the timer.
    first = threading.Lock()
    faults.recorder.on_query = lambda _query_id: killer.start() if first.acquire(blocking=False) else None
    try:
        killed, killed_secs = faults.post(faults.patient, SLOW, "kill-1")
        killer.join()
        stopped = [faults.post(faults.direct, LIGHT, f"stopped-{i}") for i in range(3)]
    finally:
        faults.recorder.on_query = None
        restart_started = time.monotonic()
        cluster.up()
        restart_secs = time.monotonic() - restart_started
    back = [
        faults.post(service, LIGHT, f"back-{service.name}-{i}")
        for i in range(3)
        for service in (faults.direct, faults.patient)
    ]
    _row("broker SIGKILLed 0.05 s into the slow query", LONG_SECS, _code(killed), killed_secs)
    _row(
        "broker stopped (connection refused), 3 tries",
        SHORT_SECS,
        _code(stopped[0][0]),
        max(s for _, s in stopped),
        f"connect timeout {CONNECT_SECS:g} s",
    )
    _row(
        "broker restarted (druid up), services untouched",
        SHORT_SECS,
        f"{sum(r.status_code == 200 for r, _ in back)}/{len(back)} x 200",
        max(s for _, s in back),
        f"first try after ready; restart took {restart_secs:.0f} s",
    )
    assert _code(killed) in ("503 backend_unavailable", "502 backend_error")
    assert all(_code(r) == "503 backend_unavailable" and r.headers["Retry-After"] == "5" for r, _ in stopped)
    assert max(s for _, s in stopped) < CONNECT_SECS
    assert all(r.status_code == 200 for r, _ in back)
