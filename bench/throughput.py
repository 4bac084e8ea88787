"""Goal 4: requests/s under gunicorn against a broker that answers at once.

The service (Druid backend pointed at the stub broker) and the bare forwarder run under the
same gunicorn worker model, in alternating rounds, driven by the same closed-loop client.
Every worker model in `MODELS` is measured; the best service figure picks the setting.

The service validates a repeated body once (its parse cache), and a dashboard does repeat
bodies; `service_new` sends bodies that differ in whitespace only, more of them than the cache
holds, so every request is validated: the figure for traffic that never repeats.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import orjson
import requests

from bench.datasets import cli_env
from bench.load import requests_per_sec
from bench.reports import ORGANIZATION
from bench.service import Running, Workers, free_port, grant, gunicorn

MODELS = (Workers(2, 1), Workers(2, 4), Workers(3, 1), Workers(3, 2), Workers(4, 1))
CONNECTIONS = 8
# More distinct bodies than the service's parse cache holds (512), cycled: every one misses.
NEW_BODIES = 2048


def distinct_bodies(payload: dict[str, Any]) -> list[bytes]:
    """The same query `NEW_BODIES` times, each body unique by the whitespace after its `{`."""
    body = orjson.dumps(payload)
    return [b"{" + b" " * index + body[1:] for index in range(NEW_BODIES)]


@contextmanager
def stub_broker(answer: bytes, directory: Path) -> Iterator[str]:
    """The stub broker process answering every query with `answer`."""
    body = directory / "answer.json"
    body.write_bytes(answer)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.stub", str(port), str(body)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.post(url + "/druid/v2/", data=b"{}", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _servers(
    stack: ExitStack, stub: str, workers: Workers, directory: Path
) -> dict[str, tuple[Running, dict[str, str]]]:
    env = cli_env("druid", data_dir=directory / "service")
    env.update(PROXY_DRUID_BROKER_URL=stub)
    token = grant(directory / "service", ORGANIZATION)
    service = stack.enter_context(
        gunicorn("proxy.web.app:create_app()", env, workers, directory / "service.log", token)
    )
    forwarder = stack.enter_context(
        gunicorn(
            "bench.forwarder:create_app()",
            {**os.environ, "BENCH_UPSTREAM_URL": stub},
            workers,
            directory / "forwarder.log",
        )
    )
    authorized = {"Authorization": f"Token {token}"}
    return {
        "service": (service, authorized),
        "service_new": (service, authorized),
        "forwarder": (forwarder, {}),
    }


def measure_model(
    stub: str,
    native: dict[str, Any],
    payload: dict[str, Any],
    workers: Workers,
    rounds: int,
    secs: float,
    directory: Path,
) -> dict[str, Any]:
    """Alternating rounds of service and forwarder under one worker model; rps per round."""
    # The forwarder is sent the native query the service would send, and passes it on as it is.
    bodies = {
        "service": [orjson.dumps(payload)],
        "service_new": distinct_bodies(payload),
        "forwarder": [orjson.dumps(native)],
    }
    with ExitStack() as stack:
        servers = _servers(stack, stub, workers, directory)
        for name, (running, headers) in servers.items():  # warm-up: imports, connections, caches
            requests_per_sec(running.url(ORGANIZATION), bodies[name], headers, CONNECTIONS, 1.0)
        samples: dict[str, list[float]] = {name: [] for name in servers}
        for index in range(rounds):
            order = list(servers) if index % 2 == 0 else list(reversed(servers))
            for name in order:
                running, headers = servers[name]
                samples[name].append(
                    requests_per_sec(running.url(ORGANIZATION), bodies[name], headers, CONNECTIONS, secs)
                )
    rps = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "workers": str(workers),
        "service_rps": rps["service"],
        "service_new_rps": rps["service_new"],
        "forwarder_rps": rps["forwarder"],
        "ratio": rps["service"] / rps["forwarder"],
        "ratio_new": rps["service_new"] / rps["forwarder"],
        "samples": samples,
    }


def run(
    answer: bytes,
    native: dict[str, Any],
    payload: dict[str, Any],
    rounds: int,
    secs: float,
    log: Any,
    models: tuple[Workers, ...] = MODELS,
) -> dict[str, Any]:
    """Goal 4 for every worker model; the best model by service throughput."""
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp,
        stub_broker(answer, Path(tmp)) as stub,
    ):
        for workers in models:
            directory = Path(tmp) / str(workers).replace(" ", "-")
            directory.mkdir()
            entry = measure_model(stub, native, payload, workers, rounds, secs, directory)
            log(
                f"  {entry['workers']}: service {entry['service_rps']:.0f} req/s (every body new "
                f"{entry['service_new_rps']:.0f}), forwarder {entry['forwarder_rps']:.0f} req/s "
                f"(x{entry['ratio']:.3f}, new bodies x{entry['ratio_new']:.3f}; {rounds} rounds of {secs:g} s, "
                f"{CONNECTIONS} connections)"
            )
            results.append(entry)
    best = max(results, key=lambda entry: entry["service_rps"])
    return {"models": results, "best": best, "forwarder_best": max(results, key=lambda e: e["forwarder_rps"])}
