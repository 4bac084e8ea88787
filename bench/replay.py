"""Dashboard replay (issue 12): the service with its result cache, without it, and direct Druid
with Druid's own caches asked for in the query context, side by side on one trace.

The trace: three dashboards (eight panels: the four typical reports, an hour series, a month
series, two filtered top-N) refreshed by `VIEWERS` viewers, `refreshes` times each; halfway, one
`reporting-proxy load` replaces a day inside every panel's interval with half of its sessions,
so every answer changes. Each dashboard refresh runs on the three paths in turn (who goes first
rotates), each viewer on its own keep-alive connection per path, the panels one after another.

- `cached`: the service with `PROXY_CACHE_MAX_BYTES` > 0; `uncached`: the same without it;
- `druid`: the native query the service sends (its `?explain=true`), sent through pydruid's
  client with `useCache`, `populateCache`, `useResultLevelCache`, `populateResultLevelCache`.

A request is cold when it is the first of its panel since the trace began or since the load.
Every answer is checked against the truth: a fresh direct query with every Druid cache off,
remapped in-process by the service's own plan; an answer that differs after the load is stale.
The data: the sessions of `QUARTER` from the main data set, in a datasource of the replay's
own, so the load never touches what the other phases read.
"""

from __future__ import annotations

import copy
import math
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import requests
from pydruid.query import Query

from bench.broker import Broker
from bench.datasets import BROKER, WORK, Dataset, cli, cli_env, druid_count
from bench.overhead import native_query
from bench.reports import JUNE, ORGANIZATION, REPORTS
from bench.service import Client, Running, Workers, grant, gunicorn
from bench.stats import interleaved, summary
from proxy.backends.druid.backend import plan_rows
from proxy.backends.druid.translator import translate
from proxy.query.plan import plan_result
from proxy.query.render import render
from proxy.settings import Settings
from proxyctl.ingest.ndjson import line_timestamp_ms
from schemas.request import QuerySchema

# UTC months of the main data set the dashboards read, and the day the load replaces.
QUARTER = ("2019-04", "2019-05", "2019-06")
REPLACED_DAY = "2019-06-10"
VIEWERS = 4
# Reports asked once each after the trace: enough cold requests for a median of their own.
FIRST_ASKS = 60
CACHE_BYTES = 64 * 1024 * 1024
PATHS = ("cached", "uncached", "druid")
DRUID_CACHES = ("useCache", "populateCache", "useResultLevelCache", "populateResultLevelCache")
UTC_QUARTER = {"start": "2019-04-01T00:00:00Z", "end": "2019-07-01T00:00:00Z"}
WEEK = {
    "start": "2019-06-08T00:00:00+03:00",
    "end": "2019-06-15T00:00:00+03:00",
    "time_zone": "Europe/Helsinki",
}
NORDICS = {"type": "in", "dimension": "country", "values": ["FI", "SE", "NO", "DK"]}
PANELS: dict[str, dict[str, Any]] = {
    **REPORTS,
    "hour_series_week": {
        "interval": WEEK,
        "granularity": "hour",
        "aggregations": [{"type": "count"}, {"type": "avg", "fields": ["session_duration_secs"]}],
    },
    "month_series_quarter": {
        "interval": UTC_QUARTER,
        "granularity": "month",
        "aggregations": [{"type": "count"}, {"type": "hyperUnique", "fields": ["visitor_id"]}],
    },
    "top_5_devices_nordics": {
        "interval": JUNE,
        "granularity": "all",
        "group_by": ["device_type"],
        "aggregations": [{"type": "count"}],
        "filters": [NORDICS],
        "order_by": [{"field": "count", "direction": "desc"}],
        "limit": 5,
    },
    "top_10_landing_mobile": {
        "interval": JUNE,
        "granularity": "all",
        "group_by": ["distinct_landing_urls"],
        "aggregations": [{"type": "count"}, {"type": "avg", "fields": ["session_duration_secs"]}],
        "filters": [{"type": "selector", "dimension": "device_type", "value": "mobile"}],
        "order_by": [{"field": "count", "direction": "desc"}],
        "limit": 10,
    },
}
DASHBOARDS: dict[str, tuple[str, ...]] = {
    "traffic": ("day_series_30d", "hour_series_week", "month_series_quarter"),
    "audience": ("by_country", "top_5_devices_nordics", "unique_visitors_nested"),
    "content": ("top_20_urls", "top_10_landing_mobile"),
}
# Asked once per worker before the trace, outside it: warm processes, no warm answers.
WARM_UP = {
    "interval": {"start": "2019-05-01T00:00:00Z", "end": "2019-05-08T00:00:00Z"},
    "granularity": "day",
    "aggregations": [{"type": "count"}],
}


@dataclass(frozen=True)
class ReplayData:
    """The replay's files: the quarter, the replaced day whole, and the half that replaces it."""

    dataset: Dataset

    @property
    def directory(self) -> Path:
        return WORK / f"replay-{self.dataset.tag}"

    @property
    def datasource(self) -> str:
        return f"bench_replay_{self.dataset.tag}"

    def file(self, name: str) -> Path:
        return self.directory / f"{name}.ndjson"

    def rows(self, name: str) -> int:
        with self.file(name).open("rb") as source:
            return sum(1 for _ in source)


def _utc_prefix(line: bytes) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(line_timestamp_ms(line) / 1000))


def make_files(data: ReplayData) -> None:
    """Cut the quarter and the replaced day out of the data set, once."""
    done = data.directory / "DONE"
    if done.exists():
        return
    data.directory.mkdir(parents=True, exist_ok=True)
    day: list[bytes] = []
    with data.dataset.path.open("rb") as source, data.file("quarter").open("wb") as quarter:
        for line in source:
            stamp = _utc_prefix(line)
            if stamp[:7] in QUARTER:
                quarter.write(line)
            if stamp == REPLACED_DAY:
                day.append(line)
    data.file("day").write_bytes(b"".join(day))
    data.file("half_day").write_bytes(b"".join(day[::2]))
    done.touch()


def prepare(data: ReplayData, log: Callable[[str], None]) -> None:
    """The quarter in the replay's datasource with the day whole, its segments new this run (so
    no cache of Druid's holds an answer of the trace before it starts)."""
    make_files(data)
    env = cli_env("druid", data.dataset)
    env["PROXY_DRUID_DATASOURCE"] = data.datasource
    whole, halved = data.rows("quarter"), data.rows("quarter") - data.rows("day") + data.rows("half_day")
    part = "day" if druid_count(data.datasource) in (whole, halved) else "quarter"
    log(f"  loading the replay's {part} into {data.datasource}")
    cli(env, "load", str(data.file(part)))


@dataclass
class Sample:
    """One timed request of the trace."""

    path: str
    panel: str
    after_load: bool
    cold: bool
    ms: float
    wrong: bool


@dataclass
class Paths:
    """The three ways a panel is asked, each viewer with its own connection per path."""

    cached: Running
    uncached: Running
    natives: dict[str, dict[str, Any]]
    clients: dict[tuple[str, int], Client] = field(default_factory=dict)
    bodies: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(PANELS))
    changed: int = 0  # panels whose answer the load changed
    floor: list[float] = field(default_factory=list)  # ms of an empty request to the cached service

    def empty_request(self) -> None:
        """GET /healthz: the same gunicorn and hop with nothing behind it."""
        self.client("floor", 0).session.get(self.cached.base_url + "/healthz", timeout=30)

    def client(self, path: str, viewer: int) -> Client:
        return self.clients.setdefault((path, viewer), Client())

    def request(self, path: str, viewer: int, panel: str) -> Callable[[], bytes]:
        """One request on a path, its body built: the call returns the answer as it came."""
        client = self.client(path, viewer)
        if path == "druid":
            return _direct(client, self.natives[panel], cached=True)
        running = self.cached if path == "cached" else self.uncached
        body, headers = orjson.dumps(self.bodies[panel]), {"Authorization": f"Token {running.token}"}
        return partial(client.post, running.url(ORGANIZATION), body, headers)


_PYDRUID = Broker(BROKER)


def _direct(client: Client, native: dict[str, Any], cached: bool) -> Callable[[], bytes]:
    """The native query as pydruid's client sends it (its body, headers and URL) on a keep-alive
    session; a fresh queryId each time, Druid's caches asked for or all turned off."""
    query = copy.deepcopy(native)
    query["context"] = {
        **native["context"],
        "queryId": str(uuid.uuid4()),
        **dict.fromkeys(DRUID_CACHES, cached),
    }
    headers, body, url = _PYDRUID._prepare_url_headers_and_body(Query(query, query["queryType"]))
    return partial(client.post, url, body.encode() if isinstance(body, str) else body, headers)


class Truth:
    """The answer each panel must have now: a fresh direct query, every cache off, remapped by
    the service's plan; the native answer for the direct path."""

    def __init__(self, natives: dict[str, dict[str, Any]]) -> None:
        self.natives = natives
        self.client = Client()
        settings = Settings()
        schema = QuerySchema(settings)
        self.plans = {
            name: plan_result(schema.load(payload), settings.max_buckets, settings.max_result_rows)
            for name, payload in PANELS.items()
        }
        self.answers: dict[str, tuple[Any, Any]] = {}

    def refresh(self) -> int:
        """Ask every panel afresh; how many answers changed since the last time."""
        before = dict(self.answers)
        for name, native in self.natives.items():
            druid_rows = orjson.loads(_direct(self.client, native, cached=False)())
            plan = self.plans[name]
            translated = translate(plan, ORGANIZATION, "bench", "truth", 60_000)
            self.answers[name] = (druid_rows, render(plan, plan_rows(druid_rows, translated, plan)))
        return sum(not same(before[name], self.answers[name]) for name in before)

    def wrong(self, path: str, panel: str, body: bytes) -> bool:
        native, public = self.answers[panel]
        return not same(orjson.loads(body), native if path == "druid" else public)


# Druid's hyperUnique estimate in a groupBy moves with the order its collectors merge in (two
# runs of one query differ by up to a few in 1,000); counts and dimension values must be equal.
# The load moves every panel by more than this: the truth before and after it is compared too.
ESTIMATE_TOLERANCE = 1e-2


def same(left: Any, right: Any) -> bool:
    """Equal JSON values, floats within ESTIMATE_TOLERANCE of each other (relative)."""
    if isinstance(left, float) or isinstance(right, float):
        numbers = isinstance(left, int | float) and isinstance(right, int | float)
        return numbers and math.isclose(left, right, rel_tol=ESTIMATE_TOLERANCE)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same, left, right))
    return bool(left == right)


def _timed_ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def trace(refreshes: int) -> Iterator[tuple[int, int, str]]:
    """(refresh, viewer, dashboard) in the order viewers refresh them."""
    for refresh in range(refreshes):
        for viewer in range(VIEWERS):
            for dashboard in DASHBOARDS:
                yield refresh, viewer, dashboard


def replay(paths: Paths, truth: Truth, refreshes: int, load: Callable[[], None], log: Any) -> list[Sample]:
    """Run the trace on every path; the load before the middle refresh."""
    samples: list[Sample] = []
    asked: set[tuple[str, str, bool]] = set()
    truth.refresh()
    for step, (refresh, viewer, dashboard) in enumerate(trace(refreshes)):
        after = refresh >= refreshes // 2
        if after and not samples[-1].after_load:
            started = time.monotonic()
            load()
            changed = truth.refresh()
            log(
                f"  load of {REPLACED_DAY} (half its sessions) in {time.monotonic() - started:.0f} s: "
                f"{changed} of {len(PANELS)} panels' answers changed"
            )
            paths.changed = changed
        paths.floor.append(_timed_ms(paths.empty_request))
        shift = step % len(PATHS)
        for path in PATHS[shift:] + PATHS[:shift]:
            for panel in DASHBOARDS[dashboard]:
                cold = (path, panel, after) not in asked
                asked.add((path, panel, after))
                call = paths.request(path, viewer, panel)
                started = time.perf_counter()
                body = call()
                ms = (time.perf_counter() - started) * 1000
                samples.append(Sample(path, panel, after, cold, ms, truth.wrong(path, panel, body)))
    return samples


def first_asks(count: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Reports no one asked before: by day and device type over 30 to 32 days, from a different
    day each (three lengths per day, one per path, so no path warms Druid's cache for another)."""
    for offset in range(count):
        start = date(2019, 4, 1) + timedelta(days=offset)
        for extra in range(len(PATHS)):
            end = start + timedelta(days=30 + extra)
            yield (
                f"first_ask_{offset}_{extra}",
                {
                    "interval": {"start": f"{start}T00:00:00Z", "end": f"{end}T00:00:00Z"},
                    "granularity": "day",
                    "group_by": ["device_type"],
                    "aggregations": [{"type": "count"}],
                },
            )


def cold_requests(paths: Paths, count: int) -> dict[str, list[float]]:
    """ms of reports asked for the first time, each path its own report of a day's three, the
    lengths and who goes first rotating."""
    asks = dict(first_asks(count))
    paths.natives.update({name: native_query(Client(), paths.uncached, body) for name, body in asks.items()})
    paths.bodies.update(asks)
    samples: dict[str, list[float]] = {path: [] for path in PATHS}
    for index in range(count):
        shift = index % len(PATHS)
        order = PATHS[shift:] + PATHS[:shift]
        for extra, path in enumerate(order):
            samples[path].append(_timed_ms(paths.request(path, 0, f"first_ask_{index}_{extra}")))
    return samples


# One repeated panel, its hit taken apart: rounds of the interleaved comparison.
HIT_PARTS_ROUNDS = 200
HIT_PANEL = "by_country"


def _conditional(client: Client, native: dict[str, Any], tag: str) -> Callable[[], int]:
    """The native query with `If-None-Match`, as the service's cache revalidates: the status."""
    headers, body, url = _PYDRUID._prepare_url_headers_and_body(Query(native, native["queryType"]))
    headers = {**headers, "If-None-Match": tag}
    return lambda: client.session.post(url, data=body, headers=headers, timeout=30).status_code


def hit_parts(paths: Paths, rounds: int) -> dict[str, dict[str, float]]:
    """ms of what a hit is made of, interleaved on one panel: the broker's HTTP floor, Druid's
    304 and its cached answer, the service's empty request, and the hit itself."""
    client, native = Client(), paths.natives[HIT_PANEL]
    headers, body, url = _PYDRUID._prepare_url_headers_and_body(Query(native, native["queryType"]))
    tagged = client.session.post(url, data=body, headers={**headers, "If-None-Match": "-"}, timeout=30)
    calls = {
        "broker_health": lambda: client.session.get(f"{BROKER}/status/health", timeout=30),
        "druid_304": _conditional(client, native, tagged.headers["ETag"]),
        "druid_cached": _direct(client, native, cached=True),
        "service_empty": paths.empty_request,
        "service_hit": paths.request("cached", 0, HIT_PANEL),
    }
    return {
        name: summary([secs * 1000 for secs in taken]) for name, taken in interleaved(calls, rounds).items()
    }


def paired_difference(sides: list[float], others: list[float], resamples: int = 2000) -> dict[str, float]:
    """The median of round-by-round differences (ms) and its 95% bootstrap interval: what one side
    adds to the other, with how sure the run is of it."""
    differences = [side - other for side, other in zip(sides, others, strict=True)]
    chooser = random.Random(12)
    medians = sorted(
        statistics.median(chooser.choices(differences, k=len(differences))) for _ in range(resamples)
    )
    return {
        "median": statistics.median(differences),
        "low": medians[int(resamples * 0.025)],
        "high": medians[int(resamples * 0.975) - 1],
    }


def service_log_figures(log_path: Path, offset: int) -> dict[str, Any]:
    """What the service's access log says from `offset` on: outcomes, time in backend queries."""
    records = [
        orjson.loads(line)
        for line in log_path.read_bytes()[offset:].splitlines()
        if line.startswith(b"{") and b'"event":"request"' in line and b"visitor_sessions" in line
    ]
    answered = [r for r in records if r.get("status") == 200]
    outcomes: dict[str, int] = {}
    for record in answered:
        outcomes[str(record.get("cache"))] = outcomes.get(str(record.get("cache")), 0) + 1
    backend = [r["backend_ms"] for r in answered if r.get("backend_ms") is not None]
    return {"outcomes": outcomes, "backend_queries": len(backend), "backend_secs": sum(backend) / 1000}


def figures(samples: list[Sample], path: str) -> dict[str, Any]:
    """Medians, p99 and totals of one path's requests."""
    mine = [s for s in samples if s.path == path]
    return {
        "cold": summary([s.ms for s in mine if s.cold]),
        "repeated": summary([s.ms for s in mine if not s.cold]),
        "all": summary([s.ms for s in mine]),
        "trace_secs": sum(s.ms for s in mine) / 1000,
        "stale_after_load": sum(s.wrong for s in mine if s.after_load),
        "wrong_before_load": sum(s.wrong for s in mine if not s.after_load),
        "answers_after_load": sum(s.after_load for s in mine),
    }


def _warm(paths: Paths, workers: Workers) -> None:
    warm = orjson.dumps(WARM_UP)
    for running in (paths.cached, paths.uncached):
        client = Client()
        for _ in range(workers.workers * workers.threads * 2):
            client.post(running.url(ORGANIZATION), warm, {"Authorization": f"Token {running.token}"})


def _serve(stack: ExitStack, data: ReplayData, tmp: Path, name: str, workers: Workers, cache: int) -> Running:
    data_dir = tmp / name
    token = grant(data_dir, ORGANIZATION)
    env = {
        **cli_env("druid", data.dataset, data_dir),
        "PROXY_DRUID_DATASOURCE": data.datasource,
        "PROXY_CACHE_MAX_BYTES": str(cache),
    }
    return stack.enter_context(
        gunicorn("proxy.web.app:create_app()", env, workers, tmp / f"{name}.log", token)
    )


def druid_cache_properties() -> dict[str, str]:
    """The broker's cache settings as it runs (its /status/properties), for the record."""
    properties = requests.get(f"{BROKER}/status/properties", timeout=10).json()
    return {
        k: v for k, v in sorted(properties.items()) if k.startswith(("druid.broker.cache", "druid.cache"))
    }


def run(dataset: Dataset, workers: Workers, refreshes: int, log: Any) -> dict[str, Any]:
    """The replay on the main data set; figures per path and the service's own account."""
    data = ReplayData(dataset)
    prepare(data, log)
    env = {**cli_env("druid", dataset), "PROXY_DRUID_DATASOURCE": data.datasource}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-replay-")))
        cached = _serve(stack, data, tmp, "cached", workers, CACHE_BYTES)
        uncached = _serve(stack, data, tmp, "uncached", workers, 0)
        natives = {name: native_query(Client(), uncached, payload) for name, payload in PANELS.items()}
        paths = Paths(cached, uncached, natives)
        _warm(paths, workers)
        offsets = {name: (tmp / f"{name}.log").stat().st_size for name in ("cached", "uncached")}
        started = time.monotonic()
        samples = replay(paths, Truth(natives), refreshes, lambda: _load_half(env, data), log)
        found = {path: figures(samples, path) for path in PATHS}
        for name in ("cached", "uncached"):
            found[name]["service"] = service_log_figures(tmp / f"{name}.log", offsets[name])
        colds = cold_requests(paths, FIRST_ASKS)
        for path, cold in colds.items():
            found[path]["first_asks"] = summary(cold)
        found["cached"]["first_ask_extra_ms"] = paired_difference(colds["cached"], colds["uncached"])
        parts = hit_parts(paths, HIT_PARTS_ROUNDS)
    found["druid"]["backend_secs"] = found["druid"]["trace_secs"]
    result = {
        "paths": found,
        "panels": len(PANELS),
        "panels_changed_by_load": paths.changed,
        "empty_request": summary(paths.floor),
        "hit_parts": parts,
        "dashboards": len(DASHBOARDS),
        "viewers": VIEWERS,
        "refreshes": refreshes,
        "workers": str(workers),
        "cache_bytes": CACHE_BYTES,
        "datasource": data.datasource,
        "druid_cache_properties": druid_cache_properties(),
        "elapsed_secs": round(time.monotonic() - started),
    }
    _log_figures(result, log)
    return result


def _load_half(env: dict[str, str], data: ReplayData) -> None:
    cli(env, "load", str(data.file("half_day")))


def _log_figures(result: dict[str, Any], log: Any) -> None:
    log(f"  empty request (GET /healthz) median {result['empty_request']['median']:.2f} ms")
    parts = ", ".join(f"{name} {entry['median']:.2f}" for name, entry in result["hit_parts"].items())
    log(f"  a hit's parts, medians ms ({HIT_PANEL}, interleaved): {parts}")
    extra = result["paths"]["cached"]["first_ask_extra_ms"]
    log(
        f"  a first ask with the cache minus without it, paired: median {extra['median']:+.2f} ms "
        f"(95% interval {extra['low']:+.2f} to {extra['high']:+.2f})"
    )
    for path, entry in result["paths"].items():
        log(
            f"  {path}: cold median {entry['cold']['median']:.1f} ms (n {entry['cold']['n']}; first asks "
            f"{entry['first_asks']['median']:.1f} ms, n {entry['first_asks']['n']}), repeated "
            f"median {entry['repeated']['median']:.2f} p99 {entry['repeated']['p99']:.1f} ms, trace "
            f"{entry['trace_secs']:.1f} s, stale after the load {entry['stale_after_load']} of "
            f"{entry['answers_after_load']}"
        )
