"""Goal 5: latency of the typical reports through the service, per backend and data size.

Every (backend, size) service runs at once; each round sends every report to every service,
so all of them see the same machine load.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

from bench.datasets import Dataset, cli_env
from bench.reports import ORGANIZATION
from bench.service import Client, Running, Workers, grant, gunicorn
from bench.stats import interleaved, summary


def _start(stack: ExitStack, backend: str, dataset: Dataset, workers: Workers, tmp: Path) -> Running:
    data_dir = dataset.embedded_data_dir if backend == "embedded" else tmp / f"druid-{dataset.tag}"
    token = grant(data_dir, ORGANIZATION)
    env = cli_env(backend, dataset, data_dir)
    return stack.enter_context(
        gunicorn("proxy.web.app:create_app()", env, workers, tmp / f"{backend}-{dataset.tag}.log", token)
    )


def run(
    datasets: list[Dataset],
    backends: list[str],
    reports: dict[str, dict[str, Any]],
    workers: Workers,
    rounds: int,
    log: Any,
) -> dict[str, Any]:
    """Median and p95 ms per backend, size and report."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scaling-")))
        services = {
            (backend, dataset.sessions): _start(stack, backend, dataset, workers, tmp)
            for backend in backends
            for dataset in datasets
        }
        client = Client()
        calls = {
            f"{backend}|{size}|{name}": partial(client.query, running, ORGANIZATION, payload)
            for (backend, size), running in services.items()
            for name, payload in reports.items()
        }
        interleaved(calls, 2)
        samples = interleaved(calls, rounds)
    results: dict[str, Any] = {}
    for key, values in samples.items():
        backend, size, name = key.split("|")
        results.setdefault(backend, {}).setdefault(size, {})[name] = summary([v * 1000 for v in values])
    for backend, sizes in results.items():
        for size, reports_ms in sizes.items():
            medians = ", ".join(f"{name} {entry['median']:.1f}" for name, entry in reports_ms.items())
            log(f"  {backend} {int(size):,} sessions: {medians} ms (median of {rounds})")
    return results
