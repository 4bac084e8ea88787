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
import os
import random
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from proxyctl.ingest.sample_values import (
    AGENT_SLOTS,
    COUNT_BITS,
    DURATION_SLOTS,
    IP_ORGANIZATION_SLOTS,
    LOCATION_SLOTS,
    PATHS,
    REFERRER_SLOTS,
    ROOM_SLOTS,
    SEARCH_TERM_SLOTS,
    SLUGS,
    TABLE_BITS,
    URL_COUNT_SLOTS,
    URL_RANK_SLOTS,
    UTC_HOUR_SLOTS,
    draw_table,
)

DEMO_ORGANIZATION = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
DEFAULT_START = date(2018, 12, 31)
DEFAULT_DAYS = 335  # through 2019-11-30 UTC: New Year in Helsinki and both 2019 DST switches

HELSINKI = ZoneInfo("Europe/Helsinki")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_LISTED_URLS = 100
CHUNK = 20_000  # sessions per random stream: part of the output format, never change lightly
_MASK64 = (1 << 64) - 1


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


def _org_urls(rng: random.Random, index: int) -> tuple[str, ...]:
    site = f"https://shop{index}.example.com" if index % 2 else f"https://www.example-{index}.fi"
    urls = [f"{site}{path}" for path in PATHS]
    tail = urls[5:] + [f"{site}/blog/{n}-{rng.choice(SLUGS)}" for n in range(380)]
    rng.shuffle(tail)  # the front page and a few basics stay the most popular
    return tuple(urls[:5] + tail)


def _org_weights(orgs: int) -> list[float]:
    return [1 / (index + 1) ** 1.2 for index in range(orgs)]


def _make_orgs(rng: random.Random, sessions: int, orgs: int, seed: int) -> list[_Org]:
    ids = organization_ids(orgs, seed)
    weights = _org_weights(orgs)
    total = sum(weights)
    return [
        # A visitor pool of 40% of the sessions: most visitors come back.
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
    instants = [ms for edge in edges for ms in (edge, edge - 1) if span.contains(ms)]
    specials = [_Special(ms, None) for ms in instants]
    start, end = _NEW_YEAR_HELSINKI
    if span.contains(start) and span.contains(end - 1):
        count = min(300, sessions // 20)
        specials.append(_Special(start, ("Helsinki", "FI")))
        moments = [rng.randrange(start, end) for _ in range(count - 1)]
        specials += [_Special(ms, ("Helsinki", "FI")) for ms in moments]
    return specials[:sessions]


_Text = str | None
# visitor_id, city, country, browser_name, browser_version, os_name, device_type, ip_organization
_Profile = tuple[str, _Text, _Text, _Text, _Text, _Text, _Text, _Text]
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
        self.org_table = draw_table(
            [(org, max(1, int(1000 * weight))) for org, weight in zip(plan.orgs, weights)]
        )
        self.profiles: dict[int, _Profile] = {}

    def _timestamp(self, epoch_ms: int | None) -> str:
        span, bits = self.span, self.rng.getrandbits
        if epoch_ms is None and bits(6) == 0:  # about 1.5%: on a bucket edge or 1 ms before
            edges = self.plan.edges
            edge = edges[bits(30) % len(edges)] + HOUR_MS * bits(3) * bits(1)
            edge -= bits(2) == 0
            epoch_ms = edge if span.contains(edge) else span.start_ms
        if epoch_ms is None:
            day, hour = bits(32) % span.days, UTC_HOUR_SLOTS[bits(TABLE_BITS)]
            in_hour = bits(32) % HOUR_MS  # 32 bits: the modulo bias stays below 0.1%
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
            city, country = LOCATION_SLOTS[(key >> 8) % len(LOCATION_SLOTS)]
            agent = AGENT_SLOTS[(key >> 24) % len(AGENT_SLOTS)]
            ip_org = IP_ORGANIZATION_SLOTS[(key >> 40) % len(IP_ORGANIZATION_SLOTS)]
            profile = (_id_text(_mix(key) << 64 | key), city, country, *agent, ip_org)
            self.profiles[number] = profile
        return profile

    def _urls(self, org: _Org, wanted: int) -> list[str]:
        bits = self.rng.getrandbits
        if wanted == 1:  # half of the sessions: skip the bookkeeping
            return [org.urls[URL_RANK_SLOTS[bits(TABLE_BITS)]]]
        chosen: dict[int, None] = {}
        for _ in range(wanted * 3):
            chosen[URL_RANK_SLOTS[bits(TABLE_BITS)]] = None
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
        return list({table[bits(TABLE_BITS)]: None for _ in range(min(draws - 4, most))})

    def row(self, special: _Special | None) -> dict[str, Any]:
        """One session as it is written, key order included."""
        bits = self.rng.getrandbits
        org = self.org_table[bits(TABLE_BITS)] if special is None else self.plan.orgs[0]
        visitor_id, city, country, browser, version, os_name, device, ip_org = self._profile(org)
        if special is None and bits(3) == 0:  # travelling
            city, country = LOCATION_SLOTS[bits(TABLE_BITS)]
        elif special is not None and special.location is not None:
            city, country = special.location
        count = URL_COUNT_SLOTS[bits(COUNT_BITS)]
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
            "distinct_referrer_urls": self._picks(REFERRER_SLOTS, 2),
            "distinct_search_terms": self._picks(SEARCH_TERM_SLOTS, 3),
            "rooms": self._picks(ROOM_SLOTS, 3),
            "session_duration_secs": DURATION_SLOTS[bits(TABLE_BITS)] if count else 0,
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
