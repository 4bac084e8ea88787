"""The results as Markdown: one summary row per goal, then the detail tables."""

from __future__ import annotations

import statistics
from typing import Any


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _overhead_rows(overhead: dict[str, Any]) -> list[str]:
    rows = [
        "| report | rows | service median / p95 ms | Druid median / p95 ms | ratio median | ratio p95 | "
        "bare forwarder median ms (ratio) | in the service / its broker call ms | empty request (GET /healthz) ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in overhead.items():
        forwarder = (
            f"{e['forwarder']['median']:.1f} (x{e['forwarder_ratio_median']:.3f})"
            if "forwarder" in e
            else "–"
        )
        rows.append(
            f"| {name} | {e['rows']} | {e['service']['median']:.1f} / {e['service']['p95']:.1f} | "
            f"{e['druid']['median']:.1f} / {e['druid']['p95']:.1f} | {e['ratio_median']:.3f} | {e['ratio_p95']:.3f} | "
            f"{forwarder} | {e.get('in_service_ms', 0):.1f} / {e.get('in_backend_call_ms', 0):.1f} | "
            f"{e['empty']['median']:.1f} |"
        )
    return rows


def _summary_overhead(overhead: dict[str, Any]) -> str:
    ratios = [e["ratio_median"] for e in overhead.values()]
    worst, middle = max(ratios), statistics.median(ratios)
    n = next(iter(overhead.values()))["service"]["n"]
    floor = [e["forwarder_ratio_median"] for e in overhead.values() if "forwarder_ratio_median" in e]
    hop = f"; the bare forwarder alone x{min(floor):.3f}–x{max(floor):.3f}" if floor else ""
    return (
        f"| 1 | proxy overhead on Druid, 1M sessions, {n} interleaved rounds per report | "
        f"worst report x{worst:.3f}, median report x{middle:.3f} (ratio of medians){hop} | "
        f"≤ 1.10 every, ≤ 1.05 median | {_mark(worst <= 1.10 and middle <= 1.05)} |"
    )


def _summary_cpu(cpu: dict[str, Any]) -> str:
    worst = max(e["total"] for e in cpu.values())
    figures = ", ".join(f"{name} {e['total']:.0f}" for name, e in cpu.items())
    whole = ", ".join(f"{e.get('whole_request', 0):.0f}" for e in cpu.values())
    under = "" if worst < 300 else f" ({sum(e['total'] < 300 for e in cpu.values())} of {len(cpu)} under)"
    return (
        f"| 2 | service CPU per request (validate+plan+translate+remap), µs, warm caches | {figures} "
        f"(whole request in-process incl. Flask, auth, limits, logs, metrics: {whole}) | < 300 µs | "
        f"{_mark(worst < 300)}{under} |"
    )


def _cpu_rows(cpu: dict[str, Any]) -> list[str]:
    rows = [
        "| report | validate | plan (cold) | translate | remap (cold) | total | whole request in-process |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in cpu.items():
        rows.append(
            f"| {name} | {e['validate']:.0f} | {e['plan']:.0f} ({e['plan_cold']:.0f}) | {e['translate']:.0f} | "
            f"{e['remap']:.0f} ({e['remap_cold']:.0f}) | {e['total']:.0f} | {e.get('whole_request', 0):.0f} |"
        )
    return rows


def _summary_large(large: dict[str, Any]) -> str:
    peaks = [kib / 1024 for kib in large["worker_peak_kib_after"]]
    remap = large["remap_ms"]
    split = ", ".join(f"{step} {remap[step]:.0f}" for step in ("decode", "rows", "render", "encode"))
    return (
        f"| 3 | {large['rows']:,}-row groupBy, 1M sessions, {large['service']['n']} pairs "
        f"| service x{large['ratio_median']:.3f} of Druid "
        f"({large['service']['median']:.0f} vs {large['druid']['median']:.0f} ms); remap {remap['total']:.0f} ms "
        f"({split}); worker peak RSS {large['worker_peak_kib_before'] / 1024:.0f} MiB idle, {peaks[0]:.0f} MiB after "
        f"{large['service']['n'] + 1} large requests, {peaks[-1]:.0f} MiB after {len(peaks) - 1} more "
        f"| < 1.20, bounded | {_mark(large['ratio_median'] < 1.20)} (memory flat) |"
    )


def _summary_throughput(throughput: dict[str, Any]) -> str:
    best, fastest = throughput["best"], throughput["forwarder_best"]
    ratios = [entry["ratio"] for entry in throughput["models"]]
    new = [entry["ratio_new"] for entry in throughput["models"]]
    return (
        f"| 4 | throughput vs bare forwarder, stub broker, {len(ratios)} gunicorn models | "
        f"same model: x{min(ratios):.2f}–x{max(ratios):.2f} (every body new: x{min(new):.2f}–x{max(new):.2f}); "
        f"service's best ({best['workers']}) {best['service_rps']:.0f} req/s vs forwarder's best "
        f"({fastest['workers']}) {fastest['forwarder_rps']:.0f} "
        f"= x{best['service_rps'] / fastest['forwarder_rps']:.2f} "
        f"| ≥ 0.80 | {_mark(max(ratios) >= 0.80)} |"
    )


def _summary_scaling(scaling: dict[str, Any]) -> str:
    parts = []
    for backend, sizes in scaling.items():
        medians = {
            int(size): statistics.median(e["median"] for e in reports.values())
            for size, reports in sizes.items()
        }
        parts.append(f"{backend} " + " / ".join(f"{ms:.0f}" for _, ms in sorted(medians.items())))
    sizes = sorted(int(s) for s in next(iter(scaling.values())))
    label = " / ".join(f"{s // 1000}k" if s < 1_000_000 else f"{s // 1_000_000}M" for s in sizes)
    return f"| 5 | median report latency at {label} sessions, ms | {'; '.join(parts)} | (describe) | – |"


def _summary_ingestion(ingestion: dict[str, Any]) -> str:
    parts = []
    for key, record in ingestion.items():
        backend, size = key.split(":")
        if record and int(size) >= 1_000_000:
            loads = f" ({record['loads']} loads)" if record.get("loads", 1) > 1 else ""
            parts.append(f"{backend} {int(size) // 1_000_000}M {record['sessions_per_sec']:,}/s{loads}")
    return f"| 6 | ingestion through `reporting-proxy load`, sessions/s | {', '.join(parts)} | (report) | – |"


def _summary_accuracy(accuracy: dict[str, Any], storage: dict[str, Any]) -> str:
    parts = []
    for name, e in accuracy["estimators"].items():
        parts.append(f"{name}: p95 {e['p95']:.2%}, p99 {e['p99']:.2%}, max {e['max']:.2%}")
    public = accuracy["estimators"]["HLL sketch lgK 14 (*_sketch)"]
    per_session = storage["bytes_per_session"]
    cost = (
        f"; storage per session: sketch {per_session.get('visitor_id_sketch', 0):.1f} B, "
        f"hll {per_session.get('visitor_id_hll', 0):.1f} B per column"
    )
    return (
        f"| 7 | unique-count error, {accuracy['pairs']} pairs, {accuracy['cardinality_min']:,}–"
        f"{accuracy['cardinality_max']:,} distinct | {'; '.join(parts)}{cost} | p95 ≤ 2% (public column) | "
        f"{_mark(public['p95'] <= 0.02)} |"
    )


def _summary_replay(replay: dict[str, Any]) -> str:
    cached, uncached, druid = (replay["paths"][path] for path in ("cached", "uncached", "druid"))
    share = cached["repeated"]["median"] / druid["repeated"]["median"]
    cold = cached["first_asks"]["median"] / uncached["first_asks"]["median"]
    stale = sum(entry["stale_after_load"] for entry in replay["paths"].values())
    met = share <= 0.25 and cached["trace_secs"] < druid["trace_secs"] and cold <= 1.05 and stale == 0
    return (
        f"| 8 | dashboard replay, {replay['dashboards']} dashboards ({replay['panels']} panels) x "
        f"{replay['viewers']} viewers x {replay['refreshes']} refreshes, one load halfway | repeated median "
        f"{cached['repeated']['median']:.1f} ms with the cache = x{share:.2f} of Druid's "
        f"({druid['repeated']['median']:.1f} ms, its caches asked for); trace {cached['trace_secs']:.1f} s vs "
        f"{druid['trace_secs']:.1f} s (no cache {uncached['trace_secs']:.1f} s); first asks x{cold:.2f} of the "
        f"uncached service's; {stale} stale | ≤ 0.25, faster end to end, cold no slower, 0 stale | {_mark(met)} |"
    )


def _replay_rows(replay: dict[str, Any]) -> list[str]:
    rows = [
        "| path | cold median / p99 ms (n) | repeated median / p99 ms (n) | trace s | backend queries / s "
        "| stale after the load | first asks median / p99 ms (n) |",
        "|---|---|---|---|---|---|---|",
    ]
    for path, e in replay["paths"].items():
        service = e.get("service")
        backend = (
            f"{service['backend_queries']} / {service['backend_secs']:.1f}"
            if service
            else f"{e['all']['n']} / {e['backend_secs']:.1f}"
        )
        rows.append(
            f"| {path} | {e['cold']['median']:.1f} / {e['cold']['p99']:.1f} ({e['cold']['n']}) | "
            f"{e['repeated']['median']:.2f} / {e['repeated']['p99']:.1f} ({e['repeated']['n']}) | "
            f"{e['trace_secs']:.2f} | {backend} | {e['stale_after_load']} of {e['answers_after_load']} | "
            f"{e['first_asks']['median']:.1f} / {e['first_asks']['p99']:.1f} ({e['first_asks']['n']}) |"
        )
    floor = replay["empty_request"]
    rows.append(
        f"| empty request (GET /healthz), cached service | | {floor['median']:.2f} / {floor['p99']:.1f} | | | | |"
    )
    return rows


def _limits_rows(found: dict[str, Any]) -> list[str]:
    rows = [
        "| limits, ms per request | local median | local p99 | shared median | shared p99 | added median | added p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for part in ("in_process", "served"):
        e = found[part]
        rows.append(
            f"| {part} ({found['rounds']} rounds) | {e['local']['median']:.3f} | {e['local']['p99']:.3f} "
            f"| {e['shared']['median']:.3f} | {e['shared']['p99']:.3f} "
            f"| {e['added_median_ms']:+.3f} | {e['added_p99_ms']:+.3f} |"
        )
    return rows


def render_table(results: dict[str, Any]) -> str:
    """Markdown of everything measured; missing phases are left out."""
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
        f"Druid {m['druid']}, seed {m['seed']}, load average {m['load_average_start'][0]:.1f} at start "
        f"(shared, noisy box). {results['when']}.",
        "",
        "| # | measurement | figure | goal | |",
        "|---|---|---|---|---|",
    ]
    summaries = [
        ("overhead", _summary_overhead),
        ("cpu_us", _summary_cpu),
        ("large", _summary_large),
        ("throughput", _summary_throughput),
        ("scaling", _summary_scaling),
        ("ingestion", _summary_ingestion),
    ]
    lines += [render(results[key]) for key, render in summaries if key in results]
    if "accuracy" in results:
        lines.append(_summary_accuracy(results["accuracy"], results["storage"]))
    if "replay" in results:
        lines.append(_summary_replay(results["replay"]))
    if "overhead" in results:
        lines += ["", *_overhead_rows(results["overhead"])]
    if "cpu_us" in results:
        lines += ["", *_cpu_rows(results["cpu_us"])]
    if "replay" in results:
        lines += ["", *_replay_rows(results["replay"])]
    if "limits" in results:
        lines += ["", *_limits_rows(results["limits"])]
    if "throughput" in results:
        lines += [
            "",
            "| gunicorn model | service req/s | every body new | forwarder req/s | ratio | ratio, new bodies |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {e['workers']} | {e['service_rps']:.0f} | {e['service_new_rps']:.0f} | {e['forwarder_rps']:.0f} "
            f"| {e['ratio']:.3f} | {e['ratio_new']:.3f} |"
            for e in results["throughput"]["models"]
        ]
    if "scaling" in results:
        lines += [
            "",
            "| backend | sessions | "
            + " | ".join(next(iter(next(iter(results["scaling"].values())).values())))
            + " |",
            "|---|---|" + "---|" * len(next(iter(next(iter(results["scaling"].values())).values()))),
        ]
        for backend, sizes in results["scaling"].items():
            for size, reports in sizes.items():
                lines.append(
                    f"| {backend} | {int(size):,} | "
                    + " | ".join(f"{e['median']:.1f}" for e in reports.values())
                    + " |"
                )
    return "\n".join(lines)
