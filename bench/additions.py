"""Issue 15's cost: a report alone, with `totals`, with `compare`, with both, through the served
service on Druid, in interleaved turns.

Every request moves the interval's end a millisecond of its own later (from an offset drawn per
run), so no query is ever sent twice and none is answered by the broker's result-level cache:
each request runs every query it needs.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bench.overhead import service_call
from bench.reports import REPORTS
from bench.service import Client, Running
from bench.stats import timed

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "totals": {"totals": True},
    "compare": {"compare": "previous_period"},
    "both": {"totals": True, "compare": "previous_period"},
}
MEASURED = ("day_series_30d", "by_country")


def _shifted(payload: dict[str, Any], milliseconds: int) -> dict[str, Any]:
    interval = payload["interval"]
    end = datetime.fromisoformat(interval["end"]) + timedelta(milliseconds=milliseconds)
    return {**payload, "interval": {**interval, "end": end.isoformat()}}


def _round(
    running: Running, clients: dict[str, Client], report: dict[str, Any], index: int, base: int
) -> dict[str, float]:
    """One turn of every variant, each over an interval of its own, who goes first rotating."""
    names = list(VARIANTS)
    shift = index % len(names)
    calls: dict[str, Callable[[], Any]] = {
        name: service_call(
            clients[name], running, _shifted({**report, **VARIANTS[name]}, base + index * len(names) + number)
        )
        for number, name in enumerate(names)
    }
    return {name: timed(calls[name]) * 1000 for name in names[shift:] + names[:shift]}


def _measure(running: Running, report: dict[str, Any], rounds: int, warmup: int) -> dict[str, Any]:
    clients = {name: Client() for name in VARIANTS}
    base = random.randrange(1, 10**6)
    turns = [_round(running, clients, report, index, base) for index in range(warmup + rounds)][warmup:]
    samples = {name: [turn[name] for turn in turns] for name in VARIANTS}
    return {
        "rounds": rounds,
        "median_ms": {name: statistics.median(values) for name, values in samples.items()},
        "ratio_to_plain": {
            name: statistics.median(a / b for a, b in zip(samples[name], samples["plain"]))
            for name in VARIANTS
            if name != "plain"
        },
    }


def run(running: Running, rounds: int, log: Callable[[str], None], warmup: int = 3) -> dict[str, Any]:
    """Per measured report: median latency per variant and the median ratio to the plain report."""
    found: dict[str, Any] = {}
    for name in MEASURED:
        found[name] = entry = _measure(running, REPORTS[name], rounds, warmup)
        log(
            f"  {name}: "
            + ", ".join(f"{variant} {ms:.1f} ms" for variant, ms in entry["median_ms"].items())
            + "; ratios "
            + ", ".join(f"{variant} x{ratio:.2f}" for variant, ratio in entry["ratio_to_plain"].items())
        )
    return found
