"""Staleness: with the result cache on, a `load` that replaces a day inside a cached interval is
seen by the very next answer, on each engine (the real Druid included, in a datasource of its own),
whichever of a report's backend queries (rows, comparison, totals) it changes."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from flask.testing import FlaskClient

from proxy.access.store import AccessStore
from proxy.settings import Settings, load_settings
from proxy.web.app import create_app
from proxyctl.ingest.generator import generate, organization_ids
from tests.support.served import BROKER, OVERLORD, clean_env, cli, require_druid

pytestmark = pytest.mark.integration

# A datasource of this run's own: reloading the same sessions into a datasource that already
# holds them lets `load` return while the broker still reads the previous (identical) segments,
# so Druid's ETag (and with it the cache's answer) could change between the warm-up's two asks.
DATASOURCE = f"cache_staleness_{uuid.uuid4().hex[:12]}"
SEED = 1212
JUNE = ("2019-06-01", "2019-07-01")
REPLACED_DAY = "2019-06-10"
QUERIES: dict[str, dict[str, Any]] = {
    "june_by_day": {
        "interval": {"start": f"{JUNE[0]}T00:00:00Z", "end": f"{JUNE[1]}T00:00:00Z"},
        "granularity": "day",
        "aggregations": [{"type": "count"}],
    },
    "june_by_country": {
        "interval": {"start": f"{JUNE[0]}T00:00:00Z", "end": f"{JUNE[1]}T00:00:00Z"},
        "granularity": "all",
        "group_by": ["country"],
        "aggregations": [{"type": "count"}, {"type": "avg", "fields": ["session_duration_secs"]}],
    },
    # Three backend queries (rows, comparison, totals), the extra ones on other threads: the load
    # changes the rows and the totals, not the comparison (May).
    "june_by_day_with_totals_against_may": {
        "interval": {"start": f"{JUNE[0]}T00:00:00Z", "end": f"{JUNE[1]}T00:00:00Z"},
        "granularity": "day",
        "aggregations": [{"type": "count"}],
        "totals": True,
        "compare": "previous_period",
    },
    # Only the comparison (June) changes: an extra part alone must make the answer new.
    "july_against_june": {
        "interval": {"start": "2019-07-01T00:00:00Z", "end": "2019-07-31T00:00:00Z"},
        "granularity": "all",
        "aggregations": [{"type": "count"}],
        "compare": {"start": f"{JUNE[0]}T00:00:00Z", "end": f"{JUNE[1]}T00:00:00Z"},
    },
}
ROUNDS = 10


def _env(engine: str, data_dir: Path) -> dict[str, str]:
    druid = {"druid_broker_url": BROKER, "druid_overlord_url": OVERLORD, "druid_datasource": DATASOURCE}
    return clean_env(backend=engine, data_dir=str(data_dir), **(druid if engine == "druid" else {}))


def _drop_datasource() -> None:
    """Marks this run's datasource unused, so runs do not pile up segments on the local Druid."""
    requests.delete(f"{OVERLORD}/druid/coordinator/v1/datasources/{DATASOURCE}", timeout=10)


def _june(source: Path, target: Path, keep: Any) -> Path:
    """The sessions of June that `keep` accepts, as an NDJSON file."""
    lines = [
        line for line in source.read_bytes().splitlines() if orjson.loads(line)["timestamp"][:7] == "2019-06"
    ]
    target.write_bytes(b"".join(line + b"\n" for line in lines if keep(orjson.loads(line))))
    return target


def _client(settings: Settings) -> tuple[FlaskClient, str]:
    store = AccessStore(settings.access_db_path)
    return create_app(settings).test_client(), store.create_key([organization_ids(1, SEED)[0]], "staleness")


def _ask(client: FlaskClient, token: str, query: dict[str, Any]) -> tuple[str | None, Any]:
    organization = organization_ids(1, SEED)[0]
    response = client.post(
        f"/api/reporting/v1/orgs/{organization}/visitor_sessions",
        json=query,
        headers={"Authorization": f"Token {token}"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.headers.get("X-Cache"), response.get_json()


@pytest.mark.parametrize("engine", ["embedded", "druid"])
def test_a_load_inside_a_cached_interval_is_seen_at_once(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if engine == "druid":
        require_druid()
        request.addfinalizer(_drop_datasource)
    (tmp_path / "data").mkdir(mode=0o700)
    env = _env(engine, tmp_path / "data")
    generate(tmp_path / "all.ndjson", sessions=3000, orgs=1, seed=SEED)
    before = _june(tmp_path / "all.ndjson", tmp_path / "before.ndjson", lambda session: True)
    # The replacement keeps every other session of one day, so that day's answers change.
    day = _june(
        tmp_path / "all.ndjson", tmp_path / "day.ndjson", lambda s: s["timestamp"][:10] == REPLACED_DAY
    )
    replacement = tmp_path / "replacement.ndjson"
    replacement.write_bytes(b"".join(line + b"\n" for line in day.read_bytes().splitlines()[::2]))
    cli(env, "load", str(before))
    AccessStore(load_settings(env).access_db_path).add_organization(organization_ids(1, SEED)[0], "staleness")
    cached, token = _client(load_settings(env, cache_max_bytes=8 * 1024 * 1024))
    truth, truth_token = _client(load_settings(env, cache_max_bytes=0))
    warm = {name: [_ask(cached, token, query)[0] for _ in range(2)] for name, query in QUERIES.items()}
    old_truth = [_ask(truth, truth_token, query)[1] for query in QUERIES.values()]
    cli(env, "load", str(replacement))
    answers = [
        (_ask(cached, token, query), _ask(truth, truth_token, query)[1])
        for _ in range(ROUNDS)
        for query in QUERIES.values()
    ]
    stale = sum((cached_body != truth_body) for (_, cached_body), truth_body in answers)
    outcomes = [outcome for (outcome, _), _ in answers]
    print(f"{engine}: {len(answers)} answers after the load, {stale} stale, outcomes {sorted(set(outcomes))}")
    assert warm == {name: ["miss", "hit"] for name in QUERIES}
    assert all(new != old for new, old in zip([truth for _, truth in answers[: len(QUERIES)]], old_truth))
    assert stale == 0
    assert outcomes[: len(QUERIES)] == ["miss"] * len(QUERIES)
    assert set(outcomes[len(QUERIES) :]) == {"hit"}
