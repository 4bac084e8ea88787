"""Goals 1 and 3: the service in front of Druid vs the same native query sent to the broker.

For each report the exact native query comes from the service's `?explain=true`; then the
two paths run in turns (who goes first alternates every round) on keep-alive connections.
Each direct call gets a fresh `queryId`, as each service request does.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from bench.datasets import BROKER
from bench.reports import ORGANIZATION
from bench.service import Client, Running
from bench.stats import interleaved, summary


def native_query(client: Client, running: Running, payload: dict[str, Any]) -> dict[str, Any]:
    """The native query the service would send for a payload."""
    explained = orjson.loads(client.query(running, ORGANIZATION, payload, explain=True))
    assert explained["backend"] == "druid", explained
    native: dict[str, Any] = explained["query"]
    return native


def direct_call(client: Client, native: dict[str, Any]) -> Callable[[], bytes]:
    """A call that posts the native query (fresh queryId) straight to the broker."""
    def call() -> bytes:
        query = copy.copy(native)
        query["context"] = {**native["context"], "queryId": str(uuid.uuid4())}
        return client.post(f"{BROKER}/druid/v2/", orjson.dumps(query))
    return call


def service_call(client: Client, running: Running, payload: dict[str, Any]) -> Callable[[], bytes]:
    body = orjson.dumps(payload)
    url = running.url(ORGANIZATION)
    headers = {"Authorization": f"Token {running.token}"}
    return lambda: client.post(url, body, headers)


def compare(running: Running, payload: dict[str, Any], rounds: int, warmup: int = 5) -> dict[str, Any]:
    """Interleaved latencies (ms) through the service and straight to the broker, and ratios."""
    service_client, broker_client = Client(), Client()
    native = native_query(service_client, running, payload)
    calls = {"service": service_call(service_client, running, payload),
             "druid": direct_call(broker_client, native)}
    interleaved(calls, warmup)
    samples = interleaved(calls, rounds)
    result: dict[str, Any] = {name: summary([s * 1000 for s in values]) for name, values in samples.items()}
    result["ratio_median"] = result["service"]["median"] / result["druid"]["median"]
    result["ratio_p95"] = result["service"]["p95"] / result["druid"]["p95"]
    result["answer"] = calls["druid"]()  # a recorded Druid answer, for the CPU phase
    result["native"] = native
    result["rows"] = len(orjson.loads(calls["service"]())["data"])
    return result


def run(running: Running, reports: dict[str, dict[str, Any]], rounds: int, log: Any) -> dict[str, Any]:
    """Goal 1 over every report; one entry per report."""
    results = {}
    for name, payload in reports.items():
        started = time.monotonic()
        results[name] = compare(running, payload, rounds)
        entry = results[name]
        log(f"  {name}: service {entry['service']['median']:.1f} ms vs druid {entry['druid']['median']:.1f} ms "
            f"(x{entry['ratio_median']:.3f} median, x{entry['ratio_p95']:.3f} p95, {rounds} pairs, "
            f"{time.monotonic() - started:.0f} s)")
    return results
