"""Goals 1 and 3: the service in front of Druid vs the same native query sent to the broker.

For each report the exact native query comes from the service's `?explain=true`; then the
paths run in turns (who goes first rotates every round) on keep-alive connections: through the
service, straight to the broker, and through the bare forwarder (`bench/forwarder.py`, the same
native query passed on by Flask under the same gunicorn model: what the hop alone costs, the
floor of any Python proxy here). Each direct or forwarded call gets a fresh `queryId`, as each
service request does.
"""

from __future__ import annotations

import copy
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
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


def direct_call(
    client: Client, native: dict[str, Any], url: str = f"{BROKER}/druid/v2/"
) -> Callable[[], bytes]:
    """A call that posts the native query (fresh queryId) to the broker, or to a forwarder."""

    def call() -> bytes:
        query = copy.copy(native)
        query["context"] = {**native["context"], "queryId": str(uuid.uuid4())}
        return client.post(url, orjson.dumps(query))

    return call


def service_call(client: Client, running: Running, payload: dict[str, Any]) -> Callable[[], bytes]:
    body = orjson.dumps(payload)
    url = running.url(ORGANIZATION)
    headers = {"Authorization": f"Token {running.token}"}
    return lambda: client.post(url, body, headers)


def record(running: Running, payload: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The native query of a payload and the broker's answer to it."""
    client = Client()
    native = native_query(client, running, payload)
    return native, direct_call(client, native)()


def compare(
    running: Running, payload: dict[str, Any], rounds: int, warmup: int = 5, forwarder: Running | None = None
) -> dict[str, Any]:
    """Interleaved latencies (ms) through the service, straight to the broker (and through the
    bare forwarder, if given), and the ratios to the broker's."""
    service_client, broker_client, forwarder_client = Client(), Client(), Client()
    native = native_query(service_client, running, payload)
    floor_client = Client()
    calls: dict[str, Callable[[], Any]] = {
        "service": service_call(service_client, running, payload),
        "druid": direct_call(broker_client, native),
        # An empty request (GET /healthz) through the same gunicorn and hop.
        "empty": lambda: floor_client.session.get(running.base_url + "/healthz", timeout=30),
    }
    if forwarder is not None:
        calls["forwarder"] = direct_call(forwarder_client, native, forwarder.url(ORGANIZATION))
    interleaved(calls, warmup)
    samples = interleaved(calls, rounds)
    result: dict[str, Any] = {name: summary([s * 1000 for s in values]) for name, values in samples.items()}
    result["ratio_median"] = result["service"]["median"] / result["druid"]["median"]
    result["ratio_p95"] = result["service"]["p95"] / result["druid"]["p95"]
    if forwarder is not None:
        result["forwarder_ratio_median"] = result["forwarder"]["median"] / result["druid"]["median"]
    result["answer"] = calls["druid"]()
    result["native"] = native
    result["rows"] = len(orjson.loads(calls["service"]())["data"])
    return result


def _inside(service_log: Path, offset: int) -> dict[str, float]:
    """Median ms the service spent per request (its access log) and in the backend call."""
    lines = service_log.read_bytes()[offset:].splitlines()
    records = [orjson.loads(line) for line in lines if line.startswith(b"{") and b'"event":"request"' in line]
    answered = [r for r in records if r.get("status") == 200 and r.get("backend_ms") is not None]
    if not answered:
        return {}
    return {
        "in_service_ms": statistics.median(r["duration_ms"] for r in answered),
        "in_backend_call_ms": statistics.median(r["backend_ms"] for r in answered),
    }


def run(
    running: Running,
    reports: dict[str, dict[str, Any]],
    rounds: int,
    log: Any,
    service_log: Path | None = None,
    forwarder: Running | None = None,
) -> dict[str, Any]:
    """Goal 1 over every report; one entry per report."""
    results = {}
    for name, payload in reports.items():
        started = time.monotonic()
        offset = service_log.stat().st_size if service_log else 0
        results[name] = entry = compare(running, payload, rounds, forwarder=forwarder)
        if service_log:
            entry.update(_inside(service_log, offset))
        log(
            f"  {name}: service {entry['service']['median']:.1f} ms vs druid {entry['druid']['median']:.1f} ms "
            f"(x{entry['ratio_median']:.3f} median, x{entry['ratio_p95']:.3f} p95, {rounds} pairs, "
            f"{time.monotonic() - started:.0f} s; empty request {entry['empty']['median']:.1f} ms; "
            f"in the service {entry.get('in_service_ms', 0):.1f} ms, "
            f"of which the broker call {entry.get('in_backend_call_ms', 0):.1f} ms; bare forwarder "
            f"x{entry.get('forwarder_ratio_median', float('nan')):.3f})"
        )
    return results
