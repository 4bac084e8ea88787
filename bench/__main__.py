"""`make bench`: run the eight measurements side by side, print the table, keep the results.

Environment: BENCH_SEED (default 1), BENCH_FULL=1 adds the 10M-session data set to the
scaling phase (generating and loading it into Druid takes a long time), BENCH_ROUNDS
scales the number of interleaved rounds (default 1.0), BENCH_ONLY=overhead,cpu,... runs a
subset (BENCH_ONLY=replay: the dashboard replay alone, without loading the shared data sets;
BENCH_ONLY=additions: the cost of totals and compare; BENCH_ONLY=limits: the shared limits
store against the host's table, needing the local PostgreSQL),
BENCH_REINGEST=1 reloads the data sets to measure ingestion again, BENCH_WORKERS=3x1
serves the latency phases with another gunicorn model (processes x threads).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import accuracy, additions, cpu, large, limits, overhead, replay, scaling, throughput
from bench.datasets import BROKER, Dataset, cli_env, ensure_file, ensure_loaded
from bench.reports import LARGE, ORGANIZATION, REPORTS
from bench.service import Running, Workers, grant, gunicorn
from bench.table import render_table

RESULTS = Path(__file__).resolve().parent / "results"
SEED = int(os.environ.get("BENCH_SEED", "1"))
FULL = os.environ.get("BENCH_FULL") == "1"
SCALE = float(os.environ.get("BENCH_ROUNDS", "1"))
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
# The phases that read the shared data sets, loaded into both backends before any of them runs.
SHARED_DATA_PHASES = ("overhead", "cpu", "additions", "large", "throughput", "scaling", "accuracy")
# The worker model `reporting-proxy serve` defaults to; chosen from goals 1 and 4's measurements.
SERVICE_WORKERS = Workers(*map(int, os.environ.get("BENCH_WORKERS", "3x2").split("x")))
# Each report's native query and the broker's answer to it, as the service sent and got them.
Recorded = dict[str, tuple[dict[str, Any], bytes]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rounds(base: int) -> int:
    return max(3, int(base * SCALE))


def wanted(phase: str) -> bool:
    return not ONLY or phase in ONLY


def machine() -> dict[str, Any]:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory) / 2**20, 1),
        "python": platform.python_version(),
        "load_average_start": os.getloadavg(),
        "druid": "33.0.0 (reporting-proxy druid up)",
        "seed": SEED,
    }


def main() -> None:
    started = time.monotonic()
    sizes = [100_000, 1_000_000] + ([10_000_000] if FULL else [])
    datasets = {size: Dataset(size, SEED) for size in sizes}
    main_set = datasets[1_000_000]
    results: dict[str, Any] = {"machine": machine(), "when": datetime.now(UTC).isoformat(timespec="seconds")}
    if any(map(wanted, SHARED_DATA_PHASES)):
        _on_shared_data(datasets, main_set, results)
    if wanted("replay"):
        log(f"8. dashboard replay: service with its cache, without, and Druid's caches ({SERVICE_WORKERS})")
        ensure_file(main_set, log)
        results["replay"] = replay.run(main_set, SERVICE_WORKERS, rounds(8), log)
    if wanted("limits"):
        log(f"9. limits shared through PostgreSQL vs the host's table, per request ({SERVICE_WORKERS})")
        results["limits"] = limits.run(SERVICE_WORKERS, rounds(2000), log)
    results["machine"]["load_average_end"] = os.getloadavg()
    results["elapsed_secs"] = round(time.monotonic() - started)
    _save(results)


def _on_shared_data(datasets: dict[int, Dataset], main_set: Dataset, results: dict[str, Any]) -> None:
    """Phases 1 to 7, on the data sets loaded into both backends."""
    log("data sets (generated and loaded once, reused while the broker counts the same sessions)")
    results["ingestion"] = {
        f"{backend}:{size}": ensure_loaded(backend, dataset, log)
        for size, dataset in datasets.items()
        for backend in ("druid", "embedded")
    }
    recorded = _against_the_service(main_set, results)
    if wanted("large"):
        results["large"] = _large_result(main_set)
    if wanted("throughput"):
        log("4. throughput against a stub broker, service vs bare forwarder, per worker model")
        native, answer = recorded["day_series_30d"]
        results["throughput"] = throughput.run(answer, native, REPORTS["day_series_30d"], rounds(3), 3.0, log)
    if wanted("scaling"):
        log("5. scaling: typical reports per backend and size")
        results["scaling"] = scaling.run(
            list(datasets.values()), ["druid", "embedded"], REPORTS, SERVICE_WORKERS, rounds(15), log
        )
    if wanted("accuracy"):
        log("7. unique-count accuracy and storage")
        results["accuracy"] = accuracy.errors(main_set)
        results["storage"] = accuracy.storage(main_set)


def _against_the_service(main_set: Dataset, results: dict[str, Any]) -> Recorded:
    """Goals 1 and 2 on the served Druid backend; the native queries and answers it recorded."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        data_dir = tmp / "druid-service"
        token = grant(data_dir, ORGANIZATION)
        service = stack.enter_context(
            gunicorn(
                "proxy.web.app:create_app()",
                cli_env("druid", main_set, data_dir),
                SERVICE_WORKERS,
                tmp / "service.log",
                token,
            )
        )
        if wanted("overhead"):
            results["overhead"] = _overhead(stack, tmp, service, main_set)
        if wanted("additions"):
            log("issue 15: reports alone, with totals, with compare, with both (interleaved, uncached)")
            results["additions"] = additions.run(service, rounds(30), log)
        # Recorded Druid answers and native queries for the CPU and throughput phases.
        recorded = {name: overhead.record(service, payload) for name, payload in REPORTS.items()}
        if wanted("cpu"):
            results["cpu_us"] = _cpu(recorded)
    return recorded


def _overhead(stack: ExitStack, tmp: Path, service: Running, main_set: Dataset) -> dict[str, Any]:
    log(
        f"1. overhead through the service ({SERVICE_WORKERS}) vs straight to the broker, "
        f"{main_set.sessions:,} sessions"
    )
    forwarder = stack.enter_context(
        gunicorn(
            "bench.forwarder:create_app()",
            {**os.environ, "BENCH_UPSTREAM_URL": BROKER},
            SERVICE_WORKERS,
            tmp / "forwarder.log",
        )
    )
    found: dict[str, Any] = overhead.run(service, REPORTS, rounds(100), log, tmp / "service.log", forwarder)
    for entry in found.values():
        entry.pop("answer")
    return found


def _cpu(recorded: Recorded) -> dict[str, Any]:
    log("2. service CPU per request without the backend")
    cases = {name: (REPORTS[name], recorded[name][1]) for name in REPORTS}
    found: dict[str, Any] = cpu.measure(cases)
    whole = cpu.whole_request(cases)
    for name, entry in found.items():
        entry["whole_request"] = whole[name]
        log(
            f"  {name}: {entry['total']:.0f} µs ("
            + ", ".join(f"{s} {entry[s]:.0f}" for s in cpu.STAGES)
            + f"); whole request in-process {whole[name]:.0f} µs"
        )
    return found


def _large_result(main_set: Dataset) -> dict[str, Any]:
    log("3. large result: 100,000 rows")
    with tempfile.TemporaryDirectory(prefix="bench-large-") as large_tmp:
        token = grant(Path(large_tmp), ORGANIZATION)
        env = cli_env("druid", main_set, Path(large_tmp))
        with gunicorn(
            "proxy.web.app:create_app()", env, Workers(1, 1), Path(large_tmp) / "service.log", token
        ) as one:
            return large.run(one, LARGE, rounds(21), log)


def _save(results: dict[str, Any]) -> None:
    """Print the table; keep it and the raw results in bench/results under the run's time."""
    table = render_table(results)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    (RESULTS / f"{stamp}.md").write_text(table + "\n")
    (RESULTS / "latest.md").write_text(table + "\n")
    log(f"results in {RESULTS / stamp}.json and .md ({results['elapsed_secs']} s)")


if __name__ == "__main__":
    main()
