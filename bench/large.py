"""Goal 3: a groupBy answering 100,000 rows: the service's share of the time, and its memory.

One worker with one thread serves the large report, so the worker's peak resident memory
(VmHWM) is that of one large request at a time; it is read before the first large request
and after each, to show it stays flat across requests.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import orjson

from bench import overhead
from bench.reports import ORGANIZATION
from bench.service import Client, Running
from proxy.backends.druid.backend import plan_rows
from proxy.backends.druid.client import _decode as decode
from proxy.backends.druid.translator import translate
from proxy.query.plan import plan_result
from proxy.query.render import render
from proxy.runtime.gc_pause import gc_paused
from proxy.settings import Settings
from schemas.request import QuerySchema


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def remap_ms(payload: dict[str, Any], answer: bytes, repeat: int = 5) -> dict[str, float]:
    """In-process median ms of each remap step over the recorded 100k-row answer."""
    settings = Settings()
    plan = plan_result(QuerySchema(settings).load(payload), settings.max_buckets, settings.max_result_rows)
    druid = translate(plan, ORGANIZATION, "bench", "id", 1000)
    steps: dict[str, list[float]] = {"decode": [], "rows": [], "render": [], "encode": []}
    for _ in range(repeat):
        marks = [time.perf_counter()]
        with gc_paused(plan.row_limit):  # as the service pauses it over a whole answer
            decoded = decode(answer)  # as the broker client decodes it
            marks.append(time.perf_counter())
            rows = plan_rows(decoded, druid, plan)
            marks.append(time.perf_counter())
            body = render(plan, rows)
            marks.append(time.perf_counter())
            orjson.dumps(body)
            marks.append(time.perf_counter())
        del decoded, rows, body
        for values, began, ended in zip(steps.values(), marks, marks[1:]):
            values.append((ended - began) * 1000)
    medians = {step: statistics.median(values) for step, values in steps.items()}
    return {**medians, "total": sum(medians.values())}


def run(running: Running, payload: dict[str, Any], rounds: int, log: Any) -> dict[str, Any]:
    """Interleaved service vs broker on the large report, remap split, worker peak memory."""
    (worker,) = running.worker_pids()
    Client().query(running, ORGANIZATION, {**payload, "limit": 10})
    before = _status_kib(worker, "VmHWM")
    compared = overhead.compare(running, payload, rounds, warmup=1)
    peaks = [_status_kib(worker, "VmHWM")]
    for _ in range(3):
        Client().query(running, ORGANIZATION, payload)
        peaks.append(_status_kib(worker, "VmHWM"))
    answer = compared.pop("answer")
    result = {
        **compared,
        "answer_bytes": len(answer),
        "remap_ms": remap_ms(payload, answer),
        "worker_peak_kib_before": before,
        "worker_peak_kib_after": peaks,
        "worker_rss_kib_end": _status_kib(worker, "VmRSS"),
    }
    log(
        f"  large: {result['rows']:,} rows, service {compared['service']['median']:.0f} ms vs druid "
        f"{compared['druid']['median']:.0f} ms (x{compared['ratio_median']:.3f}), remap "
        f"{result['remap_ms']['total']:.0f} ms, worker peak {before // 1024} -> {peaks[-1] // 1024} MiB"
    )
    return result
