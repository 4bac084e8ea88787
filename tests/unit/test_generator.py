"""The sample generator: byte-for-byte determinism, valid output, and the rows tests rely on."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from proxyctl.ingest import generator
from proxyctl.ingest.generator import DEMO_ORGANIZATION, generate, organization_ids
from proxyctl.ingest.ndjson import validate_file

SESSIONS, ORGS, SEED = 4_000, 4, 20190101


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "sessions.ndjson"
    generate(path, SESSIONS, ORGS, SEED)
    return path


@pytest.fixture(scope="module")
def rows(sample: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in sample.read_bytes().splitlines()]


def test_same_arguments_same_bytes(sample: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.ndjson"
    assert generate(again, SESSIONS, ORGS, SEED) == organization_ids(ORGS, SEED)
    assert again.read_bytes() == sample.read_bytes()


def test_another_seed_other_bytes(sample: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.ndjson"
    generate(other, SESSIONS, ORGS, SEED + 1)
    assert other.read_bytes() != sample.read_bytes()


def test_bytes_do_not_depend_on_worker_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generator, "CHUNK", 700)  # several chunks from a small file
    inline, parallel = tmp_path / "inline.ndjson", tmp_path / "parallel.ndjson"
    generate(inline, 2_000, 2, 5, workers=1)
    generate(parallel, 2_000, 2, 5, workers=2)
    assert inline.read_bytes() == parallel.read_bytes()


def test_every_line_passes_the_validator(sample: Path) -> None:
    summary = validate_file(sample)
    assert summary.rows == SESSIONS
    assert summary.organizations == frozenset(organization_ids(ORGS, SEED))


@pytest.mark.parametrize("seed", [0, 1, 99])
def test_demo_organization_comes_first_for_every_seed(seed: int) -> None:
    ids = organization_ids(3, seed)
    assert ids[0] == DEMO_ORGANIZATION and len(set(ids)) == 3


def test_organization_sizes_differ(rows: list[dict[str, Any]]) -> None:
    sizes = Counter(row["organization_id"] for row in rows).most_common()
    assert sizes[0][0] == DEMO_ORGANIZATION
    assert sizes[0][1] > 2 * sizes[-1][1] > 0


def test_helsinki_new_year_sessions_of_the_demo_org(rows: list[dict[str, Any]]) -> None:
    new_year = [
        row
        for row in rows
        if row["organization_id"] == DEMO_ORGANIZATION
        and row["city"] == "Helsinki"
        and "2018-12-31T22:00:00.000Z" <= row["timestamp"] < "2019-01-01T22:00:00.000Z"
    ]
    assert len(new_year) >= SESSIONS // 20


@pytest.mark.parametrize(
    "timestamp",
    [
        "2018-12-31T00:00:00.000Z",  # UTC midnight, first instant of the span
        "2018-12-31T22:00:00.000Z",  # Helsinki midnight, 2019-01-01
        "2018-12-31T21:59:59.999Z",
        "2019-03-31T01:00:00.000Z",  # spring forward in Helsinki
        "2019-03-31T00:59:59.999Z",
        "2019-10-27T01:00:00.000Z",  # fall back in Helsinki
        "2019-10-27T00:59:59.999Z",
    ],
)
def test_edge_timestamps_are_present_in_the_demo_org(rows: list[dict[str, Any]], timestamp: str) -> None:
    assert any(r["timestamp"] == timestamp and r["organization_id"] == DEMO_ORGANIZATION for r in rows)


def test_random_rows_also_land_on_edges(rows: list[dict[str, Any]]) -> None:
    on_the_hour = [row for row in rows[400:] if row["timestamp"].endswith(":00:00.000Z")]
    assert len(on_the_hour) > SESSIONS // 200


@pytest.mark.parametrize(
    ("what", "count_of", "least"),
    [
        ("returning visitors", lambda rows: len(rows) - len({r["visitor_id"] for r in rows}), SESSIONS // 2),
        ("null cities", lambda rows: sum(r["city"] is None for r in rows), 50),
        ("missing ip_organization", lambda rows: sum("ip_organization" not in r for r in rows), 20),
        ("missing rooms", lambda rows: sum("rooms" not in r for r in rows), 20),
        ("empty visited urls", lambda rows: sum(r["distinct_visited_urls"] == [] for r in rows), 100),
        ("100 visited urls", lambda rows: sum(len(r["distinct_visited_urls"]) == 100 for r in rows), 1),
        (
            "count over the listed cap",
            lambda rows: sum(r["distinct_visited_urls_count"] > 100 for r in rows),
            1,
        ),
        (
            "non-ASCII cities",
            lambda rows: len({r["city"] for r in rows if r["city"] and not r["city"].isascii()}),
            5,
        ),
        ("mobile devices", lambda rows: sum(r["device_type"] == "mobile" for r in rows), 500),
        ("null device types", lambda rows: sum(r["device_type"] is None for r in rows), 10),
    ],
)
def test_realistic_variety(rows: list[dict[str, Any]], what: str, count_of: Any, least: int) -> None:
    assert count_of(rows) >= least, what


def test_popular_urls_are_heavy_tailed(rows: list[dict[str, Any]]) -> None:
    urls = Counter(url for row in rows for url in row["distinct_visited_urls"])
    counts = [count for _, count in urls.most_common()]
    assert counts[0] > 10 * counts[len(counts) // 2]


def test_start_and_days_bound_the_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "june.ndjson"
    generate(path, 1_000, 2, 3, start=date(2019, 6, 1), days=2)
    summary = validate_file(path)
    assert summary.first_time >= datetime(2019, 6, 1, tzinfo=UTC)
    assert summary.last_time < datetime(2019, 6, 3, tzinfo=UTC)


def test_timestamps_have_milliseconds_and_z(rows: list[dict[str, Any]]) -> None:
    assert all(
        len(r["timestamp"]) == 24 and r["timestamp"][19] == "." and r["timestamp"][-1] == "Z" for r in rows
    )
