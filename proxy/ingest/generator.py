"""Deterministic, realistic visitor sessions as NDJSON: same arguments, byte-identical file.

All randomness is `random.Random` seeded from the `seed` argument: one stream for the shared
plan (organizations, special rows) and one per chunk of `CHUNK` sessions, so chunks can be
drawn in parallel processes and the bytes never depend on how many ran. Categorical draws
index expanded lookup tables (one `getrandbits` each) and a visitor's profile is a hash of its
number, so nothing grows with the file.

The first rows of a file are placed on purpose, all in the demo organization: sessions exactly
on bucket edges (UTC and Helsinki midnights, the 2019 DST switches, a millisecond before each)
and up to 300 Helsinki sessions on 2019-01-01 Helsinki time.
"""

from __future__ import annotations

import io
import math
import os
import random
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import orjson

DEMO_ORGANIZATION = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
DEFAULT_START = date(2018, 12, 31)
DEFAULT_DAYS = 335  # through 2019-11-30 UTC: New Year in Helsinki and both 2019 DST switches

HELSINKI = ZoneInfo("Europe/Helsinki")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_LISTED_URLS = 100
CHUNK = 20_000  # sessions per random stream: part of the output format, never change lightly
_MASK64 = (1 << 64) - 1
_TABLE_BITS = 12

T = TypeVar("T")

# (city, country, weight); None stands for an unknown value.
LOCATIONS: tuple[tuple[str | None, str | None, int], ...] = (
    ("Helsinki", "FI", 300), ("Espoo", "FI", 60), ("Tampere", "FI", 50), ("Turku", "FI", 30),
    ("Jyväskylä", "FI", 15), ("Oulu", "FI", 15), ("Stockholm", "SE", 40), ("Malmö", "SE", 10),
    ("Berlin", "DE", 40), ("München", "DE", 20), ("Zürich", "CH", 15), ("Genève", "CH", 5),
    ("London", "GB", 40), ("Paris", "FR", 30), ("Kraków", "PL", 10), ("Łódź", "PL", 5),
    ("São Paulo", "BR", 15), ("Bogotá", "CO", 5), ("New York", "US", 40),
    ("San Francisco", "US", 20), ("東京", "JP", 15), ("大阪", "JP", 5), ("Reykjavík", "IS", 3),
    (None, "FI", 30), (None, "US", 10), (None, None, 25),
)  # fmt: skip

# (browser_name, browser_version, os_name, device_type, weight)
AGENTS: tuple[tuple[str | None, str | None, str | None, str | None, int], ...] = (
    ("Chrome", "71.0.3578.98", "Windows", "desktop", 200),
    ("Chrome", "74.0.3729.169", "Windows", "desktop", 120),
    ("Chrome", "74.0.3729.157", "Mac OS X", "desktop", 60),
    ("Chrome", "76.0.3809.132", "Android", "mobile", 150),
    ("Chrome", "76.0.3809.132", "Android", "tablet", 20),
    ("Firefox", "66.0", "Windows", "desktop", 60),
    ("Firefox", "68.0", "Linux", "desktop", 25),
    ("Safari", "12.1", "Mac OS X", "desktop", 50),
    ("Mobile Safari", "12.1.2", "iOS", "mobile", 140),
    ("Mobile Safari", "12.1.2", "iOS", "tablet", 40),
    ("Edge", "18.17763", "Windows", "desktop", 40),
    ("Samsung Internet", "9.2", "Android", "mobile", 25),
    ("Opera", "60.0.3255.109", "Windows", "desktop", 10),
    ("Yandex Browser", "19.4.0", "Windows", None, 5),
    (None, None, None, None, 10),
)

IP_ORGANIZATIONS: tuple[tuple[str | None, int], ...] = (
    (None, 400), ("Elisa Oyj", 120), ("Telia Finland Oyj", 100), ("DNA Oyj", 80),
    ("Deutsche Telekom AG", 40), ("Comcast Cable Communications", 30),
    ("Université de Genève", 5), ("Kabel Deutschland GmbH", 15), ("NTT Communications", 10),
    ("Telefônica Brasil S.A.", 10), ("Helsingin yliopisto", 20),
)  # fmt: skip

PATHS: tuple[str, ...] = (
    "/", "/pricing", "/features", "/blog", "/contact", "/about", "/login", "/signup", "/docs",
    "/tuotteet", "/tuotteet/käyttöohje", "/hinnasto", "/yhteystiedot", "/ura", "/uutiset",
    "/de/preise", "/fr/société", "/ja/製品", "/support/faq", "/careers",
)  # fmt: skip
REFERRERS: tuple[tuple[str, int], ...] = (
    ("https://www.google.com/", 300), ("https://www.google.fi/", 150), ("https://www.bing.com/", 40),
    ("https://duckduckgo.com/", 25), ("https://www.facebook.com/", 60), ("https://t.co/", 30),
    ("https://www.linkedin.com/", 40), ("https://news.ycombinator.com/", 10),
    ("https://www.reddit.com/r/Suomi/", 5), ("https://yandex.ru/", 5),
)  # fmt: skip
SEARCH_TERMS: tuple[tuple[str, int], ...] = (
    ("pricing", 200), ("hinta", 150), ("käyttöohje", 80), ("login", 120), ("demo", 90),
    ("API", 40), ("api", 30), ("Zürich office", 10), ("東京 オフィス", 10), ("contact", 60),
    ("työpaikat", 30), ("shipping", 20), ("pizza 🍕", 3), ("100% free", 5), ("under_score", 4), ("a.b*c", 2),
)  # fmt: skip
ROOMS: tuple[tuple[str, int], ...] = (
    ("lobby", 300), ("support", 150), ("sales", 100), ("demo-room", 60), ("Kokoushuone 1", 30),
    ("Neuvotteluhuone Ä", 15), ("webinar", 40),
)  # fmt: skip

# Diurnal session share per UTC hour (Helsinki is UTC+2/+3: busy 06-18 UTC).
HOUR_WEIGHTS = (2, 1, 1, 1, 2, 4, 7, 10, 12, 12, 11, 11, 12, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2)


def _table(weighted: Sequence[tuple[T, int]], bits: int = _TABLE_BITS) -> tuple[T, ...]:
    """Expand (value, weight) into 2^bits slots so a draw is one `getrandbits(bits)`."""
    size = 1 << bits
    total = sum(weight for _, weight in weighted)
    counts = [max(1, weight * size // total) for _, weight in weighted]
    counts[0] += size - sum(counts)
    return tuple(value for (value, _), count in zip(weighted, counts) for _ in range(count))


def _zipf_table(items: int, exponent: float) -> tuple[int, ...]:
    """Ranks 0..items-1 with Zipf weights (rank 0 the most popular)."""
    return _table([(rank, max(1, int(10_000 / (rank + 1) ** exponent))) for rank in range(items)])


_LOCATIONS = _table([((city, country), weight) for city, country, weight in LOCATIONS])
_AGENTS = _table([(agent[:4], agent[4]) for agent in AGENTS])
_IP_ORGS = _table(IP_ORGANIZATIONS)
_REFERRERS = _table(REFERRERS)
_TERMS = _table(SEARCH_TERMS)
_ROOMS = _table(ROOMS)
_HOURS = _table(list(zip(range(24), HOUR_WEIGHTS)))
_URL_RANKS = _zipf_table(400, 1.1)


def _pareto_counts(zero: float, exponent: float, most: int) -> tuple[int, ...]:
    """`zero` of the sessions list no page; P(count >= k | k >= 1) = k ** -exponent up to `most`."""
    tail = [1.0, *((k**-exponent) for k in range(1, most + 2))]
    weights = [(k, int(1e9 * (1 - zero) * (tail[k] - tail[k + 1]))) for k in range(1, most)]
    return _table([(0, int(1e9 * zero)), *weights, (most, int(1e9 * (1 - zero) * tail[most]))], _COUNT_BITS)


def _lognormal_durations(mu: float, sigma: float, most: int) -> tuple[int, ...]:
    """Session seconds at 2^_TABLE_BITS evenly spaced quantiles: median 90 s, tail to a day."""
    normal = NormalDist(mu, sigma)
    size = 1 << _TABLE_BITS
    return tuple(min(most, int(math.exp(normal.inv_cdf((i + 0.5) / size)))) for i in range(size))


_COUNT_BITS = 16
_URL_COUNTS = _pareto_counts(0.08, 1.2, 500)
_DURATIONS = _lognormal_durations(4.5, 1.4, 86_400)


def _mix(value: int) -> int:
    """splitmix64 finalizer: a cheap bijective hash, so visitor profiles need no storage."""
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    value = (value ^ (value >> 27)) * 0x94D049BB133111EB & _MASK64
    return value ^ (value >> 31)


def _uuid_text(bits: int) -> str:
    return str(uuid.UUID(int=bits & ((1 << 128) - 1), version=4))


def _id_text(bits: int) -> str:
    """128 bits as 32 hex digits: session and visitor ids need only be unique strings."""
    return (bits & ((1 << 128) - 1)).to_bytes(16, "big").hex()


def organization_ids(orgs: int, seed: int) -> tuple[str, ...]:
    """The organizations a `generate` call with these arguments writes; the demo org first."""
    rng = random.Random(f"orgs:{seed}")
    return (DEMO_ORGANIZATION, *(_uuid_text(rng.getrandbits(128)) for _ in range(orgs - 1)))


@dataclass(frozen=True)
class _Org:
    organization_id: str
    salt: int
    visitors: int
    urls: tuple[str, ...]


_SLUGS = ("kevät", "news", "release", "päivitys")


def _org_urls(rng: random.Random, index: int) -> tuple[str, ...]:
    site = f"https://www.example-{index}.fi" if index % 2 == 0 else f"https://shop{index}.example.com"
    urls = [f"{site}{path}" for path in PATHS]
    tail = urls[5:] + [f"{site}/blog/{n}-{rng.choice(_SLUGS)}" for n in range(380)]
    rng.shuffle(tail)  # the front page and a few basics stay the most popular
    return tuple(urls[:5] + tail)


def _org_weights(orgs: int) -> list[float]:
    return [1 / (index + 1) ** 1.2 for index in range(orgs)]


def _make_orgs(rng: random.Random, sessions: int, orgs: int, seed: int) -> list[_Org]:
    ids = organization_ids(orgs, seed)
    weights = _org_weights(orgs)
    total = sum(weights)
    return [
        _Org(org_id, rng.getrandbits(64), max(1, int(sessions * weight / total * 0.4)), _org_urls(rng, i))
        for i, (org_id, weight) in enumerate(zip(ids, weights))
    ]


@dataclass(frozen=True)
class _Span:
    start_ms: int
    days: int
    day_prefixes: tuple[str, ...]

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS

    def contains(self, epoch_ms: int) -> bool:
        return self.start_ms <= epoch_ms < self.end_ms


def _make_span(start: date, days: int) -> _Span:
    first = datetime(start.year, start.month, start.day, tzinfo=UTC)
    prefixes = tuple(f"{(first + timedelta(days=n)).date().isoformat()}T" for n in range(days))
    return _Span(int(first.timestamp()) * 1000, days, prefixes)


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


def _dst_switches(span: _Span) -> list[int]:
    """EU rule (Helsinki since 1981): last Sunday of March and October, 01:00 UTC."""
    first_year = datetime.fromtimestamp(span.start_ms / 1000, UTC).year
    last_year = datetime.fromtimestamp(span.end_ms / 1000, UTC).year
    switches = []
    for year in range(first_year, last_year + 1):
        for month in (3, 10):
            last_day = datetime(year, month, 31, 1, tzinfo=UTC)
            switches.append(_epoch_ms(last_day - timedelta(days=(last_day.weekday() + 1) % 7)))
    return [ms for ms in switches if span.contains(ms)]


def _helsinki_midnight(day: date) -> int:
    return _epoch_ms(datetime(day.year, day.month, day.day, tzinfo=HELSINKI))


def _edge_instants(span: _Span) -> list[int]:
    """Bucket edges inside the span: UTC and Helsinki midnights of the first day, DST switches."""
    first_day = datetime.fromtimestamp(span.start_ms / 1000, UTC).date()
    candidates = [span.start_ms, _helsinki_midnight(first_day + timedelta(days=1))]
    candidates += _dst_switches(span)
    return [ms for ms in candidates if span.contains(ms)]


_NEW_YEAR_HELSINKI = (_helsinki_midnight(date(2019, 1, 1)), _helsinki_midnight(date(2019, 1, 2)))


@dataclass(frozen=True)
class _Special:
    """A row placed on purpose: its instant, and a forced (city, country) if any."""

    epoch_ms: int
    location: tuple[str | None, str | None] | None


def _special_sessions(rng: random.Random, span: _Span, sessions: int) -> list[_Special]:
    edges = _edge_instants(span)
    specials = [_Special(ms, None) for edge in edges for ms in (edge, edge - 1) if span.contains(ms)]
    start, end = _NEW_YEAR_HELSINKI
    if span.contains(start) and span.contains(end - 1):
        count = min(300, sessions // 20)
        specials.append(_Special(start, ("Helsinki", "FI")))
        specials += [_Special(rng.randrange(start, end), ("Helsinki", "FI")) for _ in range(count - 1)]
    return specials[:sessions]


_Profile = tuple[str, str | None, str | None, str | None, str | None, str | None, str | None, str | None]
# "HH:MM:" for each minute of a day and "SS.mmmZ" for each millisecond of a minute: a
# timestamp is three concatenated strings instead of a datetime format.
_MINUTES = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_MILLIS = tuple(f"{ms // 1000:02d}.{ms % 1000:03d}Z" for ms in range(60_000))


@dataclass(frozen=True)
class _Plan:
    """What every chunk shares; derived from the arguments alone."""

    seed: int
    sessions: int
    chunk_size: int
    orgs: tuple[_Org, ...]
    span: _Span
    specials: tuple[_Special, ...]
    edges: tuple[int, ...]


def _day_edges(span: _Span) -> tuple[int, ...]:
    """Every UTC midnight and Helsinki midnight inside the span."""
    edges = []
    for day in range(span.days):
        utc_midnight = span.start_ms + day * DAY_MS
        local = datetime.fromtimestamp(utc_midnight / 1000, UTC).date() + timedelta(days=1)
        edges += [utc_midnight, _helsinki_midnight(local)]
    return tuple(ms for ms in edges if span.contains(ms))


def _make_plan(sessions: int, orgs: int, seed: int, start: date, days: int) -> _Plan:
    rng = random.Random(f"plan:{seed}")
    span = _make_span(start, days)
    organizations = tuple(_make_orgs(rng, sessions, orgs, seed))
    specials = tuple(_special_sessions(rng, span, sessions))
    return _Plan(seed, sessions, CHUNK, organizations, span, specials, _day_edges(span))


class _Sessions:
    """Draws the sessions of one chunk from its own random stream."""

    def __init__(self, plan: _Plan, chunk: int) -> None:
        self.rng = random.Random(f"chunk:{plan.seed}:{chunk}")
        self.plan = plan
        self.span = plan.span
        weights = _org_weights(len(plan.orgs))
        self.org_table = _table([(org, max(1, int(1000 * w))) for org, w in zip(plan.orgs, weights)])
        self.profiles: dict[int, _Profile] = {}

    def _timestamp(self, epoch_ms: int | None) -> str:
        span, bits = self.span, self.rng.getrandbits
        if epoch_ms is None and bits(6) == 0:  # about 1.5%: on a bucket edge or 1 ms before
            edges = self.plan.edges
            edge = edges[bits(30) % len(edges)] + HOUR_MS * bits(3) * bits(1)
            edge -= bits(2) == 0
            epoch_ms = edge if span.contains(edge) else span.start_ms
        if epoch_ms is None:
            day, hour = bits(32) % span.days, _HOURS[bits(_TABLE_BITS)]
            in_hour = bits(22) % HOUR_MS
        else:
            day, in_day = divmod(epoch_ms - span.start_ms, DAY_MS)
            hour, in_hour = divmod(in_day, HOUR_MS)
        minute, millis = divmod(in_hour, 60_000)
        return span.day_prefixes[day] + _MINUTES[hour * 60 + minute] + _MILLIS[millis]

    def _profile(self, org: _Org) -> _Profile:
        """Who the visitor is and where from: a pure function of the visitor's number."""
        number = org.salt + int(org.visitors * self.rng.random() ** 2)  # a few return often
        profile = self.profiles.get(number)
        if profile is None:
            if len(self.profiles) > 100_000:
                self.profiles.clear()  # bounded memory; profiles are recomputed identically
            key = _mix(number)
            city, country = _LOCATIONS[(key >> 8) % len(_LOCATIONS)]
            agent = _AGENTS[(key >> 24) % len(_AGENTS)]
            ip_org = _IP_ORGS[(key >> 40) % len(_IP_ORGS)]
            profile = (_id_text(_mix(key) << 64 | key), city, country, *agent, ip_org)
            self.profiles[number] = profile
        return profile

    def _urls(self, org: _Org, wanted: int) -> list[str]:
        bits = self.rng.getrandbits
        if wanted == 1:  # half of the sessions: skip the bookkeeping
            return [org.urls[_URL_RANKS[bits(_TABLE_BITS)]]]
        chosen: dict[int, None] = {}
        for _ in range(wanted * 3):
            chosen[_URL_RANKS[bits(_TABLE_BITS)]] = None
            if len(chosen) == wanted:
                break
        rank = 0
        while len(chosen) < wanted:  # rarely: fill the long tail in rank order
            chosen.setdefault(rank, None)
            rank += 1
        return [org.urls[rank] for rank in chosen]

    def _picks(self, table: Sequence[str], most: int) -> list[str]:
        """Half of the sessions have none; the others up to `most` distinct draws."""
        bits = self.rng.getrandbits
        draws = bits(3)  # 0-3: none; 4-7: 0 to 3 draws, fewer for `most` 2
        if draws < 4:
            return []
        return list({table[bits(_TABLE_BITS)]: None for _ in range(min(draws - 4, most))})

    def row(self, special: _Special | None) -> dict[str, Any]:
        """One session as it is written, key order included."""
        rng, bits = self.rng, self.rng.getrandbits
        org = self.org_table[bits(_TABLE_BITS)] if special is None else self.plan.orgs[0]
        visitor_id, city, country, browser, version, os_name, device, ip_org = self._profile(org)
        if special is None and bits(3) == 0:  # travelling
            city, country = _LOCATIONS[bits(_TABLE_BITS)]
        elif special is not None and special.location is not None:
            city, country = special.location
        count = _URL_COUNTS[bits(_COUNT_BITS)]
        visited = self._urls(org, min(count, MAX_LISTED_URLS)) if count else []
        row: dict[str, Any] = {
            "timestamp": self._timestamp(None if special is None else special.epoch_ms),
            "organization_id": org.organization_id,
            "session_id": _id_text(bits(128)),
            "visitor_id": visitor_id,
            "browser_name": browser,
            "browser_version": version,
            "city": city,
            "country": country,
            "device_type": device,
            "os_name": os_name,
            "ip_organization": ip_org,
            "distinct_visited_urls": visited,
            "distinct_landing_urls": visited[: 1 + (bits(4) == 0)],
            "distinct_referrer_urls": self._picks(_REFERRERS, 2),
            "distinct_search_terms": self._picks(_TERMS, 3),
            "rooms": self._picks(_ROOMS, 3),
            "session_duration_secs": _DURATIONS[bits(_TABLE_BITS)] if count else 0,
            "distinct_visited_urls_count": count,
        }
        return self._drop_some(row)

    def _drop_some(self, row: dict[str, Any]) -> dict[str, Any]:
        # Optional keys are sometimes missing rather than null/empty: both forms are legal input.
        drop = self.rng.getrandbits(4)
        if drop == 0 and row["ip_organization"] is None:
            del row["ip_organization"]
        elif drop == 1 and not row["rooms"]:
            del row["rooms"]
        return row


def _chunk_bytes(plan: _Plan, chunk: int) -> bytes:
    """The NDJSON bytes of the sessions of one chunk, drawn from that chunk's own stream."""
    sessions = _Sessions(plan, chunk)
    first, last = chunk * plan.chunk_size, min((chunk + 1) * plan.chunk_size, plan.sessions)
    specials = plan.specials
    # Written line by line: orjson's results carry spare capacity, so keeping 20k of them
    # alive for a join would cost ten times the chunk's size.
    buffer = io.BytesIO()
    for index in range(first, last):
        row = sessions.row(specials[index] if index < len(specials) else None)
        buffer.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
    return buffer.getvalue()


def _chunks(plan: _Plan, workers: int) -> Iterator[bytes]:
    count = -(-plan.sessions // plan.chunk_size)
    if workers <= 1 or count == 1:
        yield from (_chunk_bytes(plan, chunk) for chunk in range(count))
        return
    with ProcessPoolExecutor(workers) as pool:
        # Bounded look-ahead: at most 2 * workers chunks are in flight or waiting to be written.
        pending: deque[Future[bytes]] = deque()
        for chunk in range(count):
            pending.append(pool.submit(_chunk_bytes, plan, chunk))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def default_workers() -> int:
    """Processes `generate` uses unless told: the CPUs this process may run on, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


def generate(
    out: Path,
    sessions: int,
    orgs: int,
    seed: int,
    start: date | None = None,
    days: int = DEFAULT_DAYS,
    workers: int | None = None,
) -> tuple[str, ...]:
    """Write `sessions` rows over `days` UTC days from `start`; return the organization ids.

    The file's bytes depend on the other arguments only, never on `workers`.
    """
    if sessions < 1 or orgs < 1 or days < 1:
        raise ValueError("sessions, orgs and days must be positive")
    plan = _make_plan(sessions, orgs, seed, start or DEFAULT_START, days)
    with out.open("wb") as sink:
        for data in _chunks(plan, default_workers() if workers is None else workers):
            sink.write(data)
    return tuple(org.organization_id for org in plan.orgs)
