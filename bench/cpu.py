"""Goal 2: service CPU per request without backend time, in microseconds, per report.

The in-process pieces a request runs over a recorded Druid answer: schema load (validation),
plan, translate (and encode the native query), remap (decode the broker's body, rows, render,
encode the response). Each iteration runs the whole pipeline of one report, the reports in
turn, so caches are as cold as between real requests; stages are timed with thread CPU time
(on a shared 2-core box the wall clock also counts the time other processes held the core).
A second figure is the whole request in-process: Flask, auth, limiter, logs and metrics
included, the backend answering the recorded rows without HTTP.
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

import proxy.backends.druid.backend as backend_module
import proxy.query.render as render_module
from bench.datasets import ADMISSION
from bench.reports import ORGANIZATION
from bench.service import grant
from proxy.backends.base import Scope
from proxy.backends.druid.backend import DruidBackend, plan_rows
from proxy.backends.druid.translator import translate
from proxy.query.plan import ResultPlan, _bucket_starts_ms, plan_result
from proxy.query.render import render
from proxy.settings import Settings, load_settings
from proxy.web.app import create_app
from schemas.request import QuerySchema

STAGES = ("validate", "plan", "translate", "remap")


def _pipeline(payload: dict[str, Any], answer: bytes) -> Callable[[list[float]], None]:
    """One request's in-process work; adds each stage's CPU seconds to `spent`."""
    settings = Settings()
    schema = QuerySchema(settings)

    def run(spent: list[float]) -> None:
        t0 = time.thread_time()
        query = schema.load(payload)
        t1 = time.thread_time()
        plan = plan_result(query, settings.max_buckets, settings.max_result_rows)
        t2 = time.thread_time()
        druid = translate(plan, ORGANIZATION, "bench", "request-id", 28_500)
        orjson.dumps(druid.native)
        t3 = time.thread_time()
        orjson.dumps(render(plan, plan_rows(orjson.loads(answer), druid, plan)))
        t4 = time.thread_time()
        for index, (began, ended) in enumerate(((t0, t1), (t1, t2), (t2, t3), (t3, t4))):
            spent[index] += ended - began

    return run


def measure(
    cases: dict[str, tuple[dict[str, Any], bytes]], rounds: int = 15, loops: int = 100
) -> dict[str, Any]:
    """Median µs per stage and in total, per report; `cases` maps name → (payload, Druid body)."""
    pipelines = {name: _pipeline(payload, answer) for name, (payload, answer) in cases.items()}
    samples: dict[str, list[list[float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        spent = {name: [0.0] * len(STAGES) for name in cases}
        for _ in range(loops):
            for name, run in pipelines.items():
                run(spent[name])
        for name, values in spent.items():
            samples[name].append([value / loops * 1e6 for value in values])
    results: dict[str, Any] = {}
    for name, rows in samples.items():
        medians = {stage: statistics.median(row[i] for row in rows) for i, stage in enumerate(STAGES)}
        results[name] = {
            **medians,
            "total": statistics.median(sum(row) for row in rows),
            "plan_cold": _plan_cold_us(cases[name][0], rounds),
            "remap_cold": _remap_cold_us(*cases[name], rounds),
        }
    return results


def _remap_cold_us(payload: dict[str, Any], answer: bytes, rounds: int) -> float:
    """The remap stage with the shared timestamp caches emptied first."""
    settings = Settings()
    plan = plan_result(QuerySchema(settings).load(payload), settings.max_buckets, settings.max_result_rows)
    druid = translate(plan, ORGANIZATION, "bench", "request-id", 28_500)
    samples = []
    for _ in range(rounds * 10):
        render_module._PRINTED.clear()
        backend_module._PARSED.clear()
        began = time.thread_time()
        orjson.dumps(render(plan, plan_rows(orjson.loads(answer), druid, plan)))
        samples.append((time.thread_time() - began) * 1e6)
    return statistics.median(samples)


def _plan_cold_us(payload: dict[str, Any], rounds: int) -> float:
    """The plan stage with the bucket cache emptied first: a first request for its interval."""
    settings = Settings()
    query = QuerySchema(settings).load(payload)
    samples = []
    for _ in range(rounds * 10):
        _bucket_starts_ms.cache_clear()
        began = time.thread_time()
        plan_result(query, settings.max_buckets, settings.max_result_rows)
        samples.append((time.thread_time() - began) * 1e6)
    return statistics.median(samples)


class _RecordedBackend(DruidBackend):
    """The Druid backend answering a recorded broker body instead of calling the broker."""

    answer = b"[]"

    def execute(self, plan: ResultPlan, scope: Scope) -> Any:
        return plan_rows(orjson.loads(self.answer), self._translate(plan, scope), plan)


def whole_request(
    cases: dict[str, tuple[dict[str, Any], bytes]], rounds: int = 9, loops: int = 100
) -> dict[str, float]:
    """Median CPU µs of a whole request in-process (Flask test client), per report."""
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        token = grant(Path(tmp), ORGANIZATION)
        settings = load_settings(
            ADMISSION, backend="druid", data_dir=Path(tmp), druid_broker_url="http://127.0.0.1:9"
        )
        backend = _RecordedBackend(settings)
        client = create_app(settings, backend).test_client()
        url = f"/api/reporting/v1/orgs/{ORGANIZATION}/visitor_sessions"
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        bodies = {name: (orjson.dumps(payload), answer) for name, (payload, answer) in cases.items()}
        samples: dict[str, list[float]] = {name: [] for name in cases}
        stderr, sys.stderr = sys.stderr, io.StringIO()  # the service's JSON log lines
        try:
            for _ in range(rounds):
                spent = dict.fromkeys(cases, 0.0)
                for _ in range(loops):
                    for name, (body, answer) in bodies.items():
                        backend.answer = answer
                        began = time.thread_time()
                        response = client.post(url, data=body, headers=headers)
                        spent[name] += time.thread_time() - began
                        assert response.status_code == 200, response.data
                    sys.stderr.seek(0)
                    sys.stderr.truncate()
                for name, value in spent.items():
                    samples[name].append(value / loops * 1e6)
        finally:
            sys.stderr = stderr
    return {name: statistics.median(values) for name, values in samples.items()}
