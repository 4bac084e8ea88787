"""What the shared access store costs one API-key request: its two lookups, SQLite vs PostgreSQL.

`python -m bench.access_store` (needs the local PostgreSQL, `reporting-proxy postgres up`): a key
request asks the store twice, `principal_for_key` then `organization_exists`. Both stores hold the
same organizations and keys; the pair of calls runs in turns (who goes first rotates), in one
process and thread, on a warm connection. Prints n, median, p95, p99 and max in microseconds.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench.stats import interleaved, summary
from proxy.access.store import AccessStore, open_access_store
from proxy.settings import Settings
from proxyctl.postgres import cluster

ROUNDS = int(os.environ.get("BENCH_ACCESS_ROUNDS", "5000"))
WARMUP = 200
ORGANIZATIONS = [f"00000000-0000-4000-8000-{index:012d}" for index in range(100)]


def _filled(store: AccessStore) -> str:
    """Organizations and a key per organization, as a service would hold; one of the keys."""
    for org in ORGANIZATIONS:
        store.add_organization(org, org)
    keys = [store.create_key([org], "bench") for org in ORGANIZATIONS]
    return keys[len(keys) // 2]


def _key_request(store: AccessStore, key: str) -> Callable[[], None]:
    org = ORGANIZATIONS[len(ORGANIZATIONS) // 2]

    def call() -> None:
        assert store.principal_for_key(key) is not None
        assert store.organization_exists(org)

    return call


def _empty_database() -> str:
    """The URL of the database `bench_access` on the local PostgreSQL, emptied."""
    layout = cluster.Layout(
        cluster.default_state_dir(), int(os.environ.get("PROXY_POSTGRES_LOCAL_PORT", "55432"))
    )
    cluster.ensure_database(layout, "bench_access")
    with psycopg.connect(layout.url("bench_access"), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return layout.url("bench_access")


def main() -> None:
    url = _empty_database()
    with tempfile.TemporaryDirectory() as data_dir:
        stores = {
            "sqlite": open_access_store(Settings(data_dir=Path(data_dir))),
            "postgres": open_access_store(Settings(data_dir=Path(data_dir), access_database_url=url)),
        }
        calls = {name: _key_request(store, _filled(store)) for name, store in stores.items()}
        interleaved(calls, WARMUP)
        samples = interleaved(calls, ROUNDS)
        for store in stores.values():
            store.close()
    for name, seconds in samples.items():
        figures = summary([value * 1e6 for value in seconds])
        line = "  ".join(f"{stat} {value:.0f}" for stat, value in figures.items())
        print(f"{name:<9} us per key request (2 lookups): {line}", file=sys.stdout)


if __name__ == "__main__":
    main()
