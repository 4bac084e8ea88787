"""Load: 50 clients in a second process for 60 s of the integration query set, through gunicorn,
to the soak cluster's real Druid. Admission limits are on, set above what the load asks for,
so the shared limiter file is used by every request of both workers: no request may fail, the
limiter may not log a problem (a lock wait given up, a full table), and the workers' memory
must stay flat: the median RSS of the last quarter of the run (after a
warm-up) within 20% of the first quarter's.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.support.queries import QUERIES
from tests.support.soak import SUMMARY, Server, SoakData, cpu_seconds, post_query, rss_bytes, serving

pytestmark = pytest.mark.soak

CLIENTS = 50
SECONDS = 60.0
WARM_UP_SECS = 10.0
SAMPLE_EVERY_SECS = 0.5
MB = 1024 * 1024


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _warm(service: Server, data: SoakData) -> None:
    for name, body in QUERIES.items():
        response, _ = post_query(service.base_url, data.organization, data.token, body, f"warm-{name}")
        assert response.status_code == 200, (name, response.text)


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def _run(service: Server, data: SoakData, out: Path) -> tuple[list[tuple[float, int]], dict[str, float]]:
    """Run the load generator; (seconds since start, summed worker RSS) sampled meanwhile, and
    the CPU seconds the workers and each Druid service used during the run."""
    command = [
        sys.executable,
        "-m",
        "tests.soak.loadgen",
        service.base_url,
        data.organization,
        data.token,
        "--clients",
        str(CLIENTS),
        "--seconds",
        str(SECONDS),
        "--out",
        str(out),
    ]
    workers = service.worker_pids()
    watched = {**data.cluster.pids(), **{f"worker {pid}": pid for pid in workers}}
    cpu_before = _cpu(watched)
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    generator = subprocess.Popen(command, cwd=Path(__file__).parents[2])
    try:
        while generator.poll() is None:
            samples.append((time.monotonic() - started, sum(rss_bytes(pid) for pid in workers)))
            time.sleep(SAMPLE_EVERY_SECS)
    finally:
        if generator.poll() is None:
            generator.kill()
        generator.wait(timeout=30)
    cpu_used = {name: seconds - cpu_before[name] for name, seconds in _cpu(watched).items()}
    assert generator.returncode == 0, "the load generator failed"
    assert service.worker_pids() == workers, "a worker was replaced during the run"
    return samples, cpu_used


# ~100 requests/s from one organization's 50 callers against 8 serving threads: rates below
# these. Concurrency limits off: one organization using every slot is this test's load (a limit
# must leave others a slot, so any would refuse some of it; test_noisy_neighbour has them on).
LIMITS = {
    "rate_limit_per_org_per_min": "1000000",
    "rate_limit_per_principal_per_min": "1000000",
    "max_concurrent_per_org": "0",
    "max_concurrent_per_principal": "0",
}


LIMITER_LOGGERS = ("proxy.runtime.limits", "proxy.runtime.table_limits")


def _limiter_complaints(log_text: str) -> list[str]:
    lines = (line for line in log_text.splitlines() if line.startswith("{"))
    return [line for line in lines if orjson.loads(line).get("logger") in LIMITER_LOGGERS]


def test_fifty_clients_for_a_minute(soak_data: SoakData) -> None:
    service = soak_data.server("load", request_timeout_secs="30", **LIMITS)
    service.threads = 4  # gunicorn_conf's default: 2 workers x 4 threads
    with serving(service):
        _warm(service, soak_data)
        samples, cpu = _run(service, soak_data, soak_data.data_dir / "load.json")
    result = orjson.loads((soak_data.data_dir / "load.json").read_bytes())
    records = result["records"]
    failures = [r for r in records if r[2] != 200]
    latencies = sorted(r[1] for r in records)
    steady = [rss for at, rss in samples if at >= WARM_UP_SECS]
    quarter = len(steady) // 4
    medians = [statistics.median(steady[i * quarter : (i + 1) * quarter]) / MB for i in range(4)]
    SUMMARY[
        "load: 50 clients x 60 s, integration query set, gunicorn 2 workers x 4 threads, real Druid, limits on"
    ] = [
        f"requests {len(records)} in {result['wall_secs']:.1f} s ({len(records) / result['wall_secs']:.1f}/s), "
        f"failures {len(failures)}",
        f"latency p50 {_percentile(latencies, 0.5) * 1000:.0f} ms, p99 {_percentile(latencies, 0.99) * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms",
        "workers' RSS (sum of 2) median by quarter after a %.0f s warm-up: %s MB; last/first %.2f"
        % (WARM_UP_SECS, " / ".join(f"{m:.0f}" for m in medians), medians[3] / medians[0]),
        "CPU seconds used during the run: proxy workers %.0f, %s (machine: %d cores, shared)"
        % (
            sum(v for k, v in cpu.items() if k.startswith("worker")),
            ", ".join(f"{k} {v:.0f}" for k, v in cpu.items() if not k.startswith("worker")),
            os.cpu_count() or 0,
        ),
    ]
    assert result["clients"] == CLIENTS and len(records) >= CLIENTS
    assert failures == [], f"{len(failures)} failed requests, e.g. {failures[:5]}"
    assert _limiter_complaints(service.log_text()) == []
    assert medians[3] <= 1.2 * medians[0], f"worker memory grew: {medians}"
