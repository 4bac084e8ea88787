"""What limits shared through PostgreSQL cost a request, against the host's own table
(`BENCH_ONLY=limits`; needs the local PostgreSQL, `reporting-proxy postgres up`).

- served: two services under gunicorn, the same in all but where the limits are counted, in
  front of a stub broker that answers at once (so the limiter's cost is not lost in Druid's),
  one keep-alive client each, requests in interleaved turns. Every limit is on and none refuses:
  a report request charges the rates, holds a slot and gives it back (three calls to the store).
- in_process: the same three calls on the limiter alone, interleaved, one thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench.reports import ORGANIZATION, REPORTS
from bench.service import Client, Running, Workers, free_port, grant, gunicorn
from bench.stats import interleaved, summary
from proxy.runtime.limits import Limiter, Limits
from proxy.runtime.shared_limits import SharedLimiter
from proxy.runtime.table_limits import TableLimiter
from proxyctl.postgres import cluster

DATABASE = "bench_limits"
WARMUP = 200
# High enough that nothing is refused; every key is still counted.
NEVER_REFUSED = {
    "rate_limit_per_org_per_min": "1000000000",
    "rate_limit_per_principal_per_min": "1000000000",
    "rate_limit_invalid_per_principal_per_min": "1000000000",
}
REPORT = "day_series_30d"


def _empty_database() -> str:
    """The URL of `bench_limits` on the local PostgreSQL, its tables dropped."""
    layout = cluster.Layout(
        cluster.default_state_dir(), int(os.environ.get("PROXY_POSTGRES_LOCAL_PORT", cluster.DEFAULT_PORT))
    )
    cluster.ensure_database(layout, DATABASE)
    with psycopg.connect(layout.url(DATABASE), autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
    return layout.url(DATABASE)


@contextmanager
def _stub_broker(tmp: Path) -> Iterator[str]:
    body = tmp / "answer.json"
    body.write_bytes(b"[]")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.stub", str(port), str(body)])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _env(data_dir: Path, broker: str, **settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROXY_")}
    values = {"backend": "druid", "druid_broker_url": broker, "data_dir": str(data_dir), **NEVER_REFUSED}
    env.update({f"PROXY_{name.upper()}": value for name, value in {**values, **settings}.items()})
    return env


def _served(tmp: Path, url: str, workers: Workers, rounds: int) -> dict[str, Any]:
    with ExitStack() as stack:
        broker = stack.enter_context(_stub_broker(tmp))
        services: dict[str, Running] = {}
        for name, settings in (("local", {}), ("shared", {"limits_database_url": url})):
            data_dir = tmp / name
            token = grant(data_dir, ORGANIZATION)
            env = _env(data_dir, broker, **settings)
            services[name] = stack.enter_context(
                gunicorn("proxy.web.app:create_app()", env, workers, tmp / f"{name}.log", token)
            )
        calls = {name: _report_call(Client(), running) for name, running in services.items()}
        interleaved(calls, WARMUP)
        return _compared(interleaved(calls, rounds))


def _report_call(client: Client, running: Running) -> Callable[[], Any]:
    return lambda: client.query(running, ORGANIZATION, REPORTS[REPORT])


def _in_process(url: str, tmp: Path, rounds: int) -> dict[str, Any]:
    limits = Limits(10**9, 10**9, 8, 6, invalid_per_principal_per_min=10**9)
    shared = SharedLimiter(url, limits)
    limiters: dict[str, Limiter] = {"local": TableLimiter(tmp / "limits.shm", limits), "shared": shared}

    def request(limiter: Limiter) -> Callable[[], None]:
        def call() -> None:
            limiter.charge(ORGANIZATION, "key:bench")
            with limiter.hold(ORGANIZATION, "key:bench"):
                pass

        return call

    calls = {name: request(limiter) for name, limiter in limiters.items()}
    interleaved(calls, WARMUP)
    try:
        return _compared(interleaved(calls, rounds))
    finally:
        shared.close()


def _compared(samples: dict[str, list[float]]) -> dict[str, Any]:
    """Each store's figures in ms, and what the shared one adds at the median and the p99."""
    found: dict[str, Any] = {
        name: summary([value * 1000 for value in values]) for name, values in samples.items()
    }
    found["added_median_ms"] = found["shared"]["median"] - found["local"]["median"]
    found["added_p99_ms"] = found["shared"]["p99"] - found["local"]["p99"]
    return found


def run(workers: Workers, rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Both measurements; the figures in ms."""
    url = _empty_database()
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as tmp:
        found: dict[str, Any] = {
            "in_process": _in_process(url, Path(tmp), rounds),
            "served": _served(Path(tmp), url, workers, rounds),
            "rounds": rounds,
        }
    for part in ("in_process", "served"):
        figures = found[part]
        log(
            f"  {part}: local median {figures['local']['median']:.3f} p99 {figures['local']['p99']:.3f} ms, "
            f"shared median {figures['shared']['median']:.3f} p99 {figures['shared']['p99']:.3f} ms "
            f"(added {figures['added_median_ms']:+.3f} / {figures['added_p99_ms']:+.3f} ms)"
        )
    return found
