"""Goal 2: service CPU per request without backend time, in microseconds, per report.

The in-process pieces a request runs, timed separately (thread CPU time) over a recorded Druid answer:
schema load (validation), plan, translate, and remap (decode the broker's body, rows,
render, encode the response). Report types are interleaved round by round.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from proxy.app import _limits
from proxy.backends.druid.backend import plan_rows
from proxy.backends.druid.translator import translate
from proxy.result import plan_result, render
from proxy.settings import Settings
from schemas.request import QuerySchema

from bench.reports import ORGANIZATION

STAGES = ("validate", "plan", "translate", "remap")


def _stage_calls(payload: dict[str, Any], answer: bytes) -> dict[str, Callable[[], Any]]:
    settings = Settings()
    schema = QuerySchema(_limits(settings))
    query = schema.load(payload)
    plan = plan_result(query, settings.max_buckets, settings.max_result_rows)
    druid = translate(plan, ORGANIZATION, "bench", "request-id", 28_500)

    def remap() -> bytes:
        rows = plan_rows(orjson.loads(answer), druid, plan)
        return orjson.dumps(render(plan, rows))

    return {
        "validate": lambda: schema.load(payload),
        "plan": lambda: plan_result(query, settings.max_buckets, settings.max_result_rows),
        "translate": lambda: orjson.dumps(translate(plan, ORGANIZATION, "bench", "request-id", 28_500).native),
        "remap": remap,
    }


def _per_call_us(call: Callable[[], Any], loops: int) -> float:
    # CPU time of this thread, not wall time: on a shared 2-core box the wall clock also
    # counts the time other processes held the core.
    started = time.thread_time()
    for _ in range(loops):
        call()
    return (time.thread_time() - started) / loops * 1e6


def measure(cases: dict[str, tuple[dict[str, Any], bytes]], rounds: int = 15, loops: int = 200) -> dict[str, Any]:
    """Median µs per stage and in total, per report; `cases` maps name → (payload, Druid body)."""
    calls = {name: _stage_calls(payload, answer) for name, (payload, answer) in cases.items()}
    samples: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STAGES} for name in cases}
    for _ in range(rounds):
        for name, stages in calls.items():
            for stage, call in stages.items():
                samples[name][stage].append(_per_call_us(call, loops))
    results: dict[str, Any] = {}
    for name, stages in samples.items():
        medians = {stage: statistics.median(values) for stage, values in stages.items()}
        results[name] = {**medians, "total": sum(medians.values())}
    return results
