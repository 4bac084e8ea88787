"""The access store: organizations, hashed API keys, grants, revocation across workers and hosts,
schema migrations; its CLI. Every test runs against both stores: this host's SQLite file and the
shared PostgreSQL (the local one `make test` starts, a fresh database per module, emptied per test).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path

import click
import psycopg
import pytest
from click.testing import CliRunner

from proxy.access.migrations import ADVISORY_LOCK
from proxy.access.principal import Principal
from proxy.access.store import AccessStore, AccessStoreError, KeyInfo, open_access_store
from proxy.settings import load_settings
from proxyctl.access import access, orgs, tokens
from tests.support.postgres import fresh_database

ORG_A = "6f1e7c2a-0d55-4b8e-9f43-2b8c1d7a9e01"
ORG_B = "a3c9e5d1-7b2f-4e6a-8c0d-5f4e3b2a1c9d"
ORG_GONE = "00000000-0000-4000-8000-000000000000"
KEY_FORMAT = re.compile(r"rpk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")
CLI = [str(Path(sys.executable).with_name("reporting-proxy"))]


@dataclasses.dataclass(frozen=True)
class Backing:
    """Where a store lives, as the `PROXY_*` variables that name it (for the CLI and other processes)."""

    kind: str
    env: dict[str, str]

    def open(self) -> AccessStore:
        """A new store on the same database: another worker, or another host."""
        return open_access_store(load_settings(self.env))


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with fresh_database("access") as url:
        yield url


def _empty_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgres"])
def backing(request: pytest.FixtureRequest, tmp_path: Path) -> Backing:
    # A data dir that does not exist yet: the store (or the CLI) must create it.
    env = {"PROXY_DATA_DIR": str(tmp_path / "new" / "var")}
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        _empty_schema(url)
        env["PROXY_ACCESS_DATABASE_URL"] = url
    return Backing(request.param, env)


@pytest.fixture
def store(backing: Backing) -> Iterator[AccessStore]:
    if backing.kind == "sqlite":
        Path(backing.env["PROXY_DATA_DIR"]).mkdir(parents=True)
    opened = backing.open()
    yield opened
    opened.close()


@pytest.fixture
def orgs_store(store: AccessStore) -> AccessStore:
    store.add_organization(ORG_A, "Acme")
    store.add_organization(ORG_B, "Globex")
    return store


def _key_id(key: str) -> str:
    return key.split("_")[1]


@pytest.mark.parametrize(
    ("organization_id", "expected"),
    [
        pytest.param(ORG_A, True, id="canonical"),
        pytest.param(ORG_A.upper(), True, id="upper-case"),
        pytest.param("{" + ORG_A + "}", True, id="braced"),
        pytest.param(ORG_GONE, False, id="never-added"),
        pytest.param("not-a-uuid", False, id="not-a-uuid"),
        pytest.param("", False, id="empty"),
    ],
)
def test_organization_exists(orgs_store: AccessStore, organization_id: str, expected: bool) -> None:
    assert orgs_store.organization_exists(organization_id) is expected


@pytest.mark.parametrize(
    ("organization_id", "message"),
    [
        pytest.param("not-a-uuid", "is not a UUID", id="not-a-uuid"),
        pytest.param("", "is not a UUID", id="empty"),
        pytest.param(ORG_A, "already exists", id="duplicate"),
        pytest.param(ORG_A.upper(), "already exists", id="duplicate-upper-case"),
    ],
)
def test_add_organization_refuses(orgs_store: AccessStore, organization_id: str, message: str) -> None:
    with pytest.raises(AccessStoreError, match=message):
        orgs_store.add_organization(organization_id, "again")


def test_list_organizations(orgs_store: AccessStore) -> None:
    listed = [(org.id, org.name) for org in orgs_store.list_organizations()]
    assert listed == [(ORG_A, "Acme"), (ORG_B, "Globex")]


@pytest.mark.parametrize(
    ("org_ids", "expected"),
    [
        pytest.param([ORG_A], {ORG_A}, id="one"),
        pytest.param([ORG_A, ORG_B], {ORG_A, ORG_B}, id="two"),
        pytest.param([ORG_A.upper(), ORG_A], {ORG_A}, id="duplicates-merged"),
    ],
)
def test_create_key_grants(orgs_store: AccessStore, org_ids: list[str], expected: set[str]) -> None:
    key = orgs_store.create_key(org_ids, "ci")
    assert KEY_FORMAT.fullmatch(key)
    principal = Principal(name=f"key:{_key_id(key)}", organizations=frozenset(expected))
    assert orgs_store.principal_for_key(key) == principal


@pytest.mark.parametrize(
    ("org_ids", "message"),
    [
        pytest.param([], "at least one organization", id="no-org"),
        pytest.param([ORG_GONE], f"unknown organization.*{ORG_GONE}", id="unknown-org"),
        pytest.param([ORG_A, ORG_GONE], "unknown organization", id="one-unknown"),
        pytest.param(["not-a-uuid"], "is not a UUID", id="not-a-uuid"),
    ],
)
def test_create_key_refuses(orgs_store: AccessStore, org_ids: list[str], message: str) -> None:
    with pytest.raises(AccessStoreError, match=message):
        orgs_store.create_key(org_ids, "ci")
    assert orgs_store.list_keys() == []


def test_list_keys_shows_grants_and_revocation_never_the_hash(orgs_store: AccessStore) -> None:
    first = _key_id(orgs_store.create_key([ORG_B, ORG_A], "first"))
    second = _key_id(orgs_store.create_key([ORG_A], "second"))
    orgs_store.revoke_key(first)
    listed = [(k.id, k.name, k.organizations, k.revoked) for k in orgs_store.list_keys()]
    assert listed == [(first, "first", (ORG_A, ORG_B), True), (second, "second", (ORG_A,), False)]
    assert [f.name for f in dataclasses.fields(KeyInfo)] == [
        "id",
        "name",
        "organizations",
        "created_at",
        "revoked_at",
    ]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda key: "", id="empty"),
        pytest.param(lambda key: "rpk_", id="prefix-only"),
        pytest.param(lambda key: key[:-1], id="truncated"),
        pytest.param(lambda key: key + "x", id="extended"),
        pytest.param(lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"), id="wrong-secret"),
        pytest.param(lambda key: "rpk_" + "0" * 16 + key[20:], id="unknown-key-id"),
        pytest.param(lambda key: "xyz" + key[3:], id="wrong-prefix"),
        pytest.param(lambda key: key.upper(), id="upper-cased"),
        pytest.param(lambda key: f" {key}", id="leading-space"),
    ],
)
def test_principal_for_key_refuses(orgs_store: AccessStore, tamper: Callable[[str], str]) -> None:
    key = orgs_store.create_key([ORG_A], "ci")
    assert orgs_store.principal_for_key(tamper(key)) is None


def test_revoked_key_is_refused_and_revoking_again_keeps_the_first_time(
    orgs_store: AccessStore,
) -> None:
    key = orgs_store.create_key([ORG_A], "ci")
    orgs_store.revoke_key(_key_id(key))
    first = orgs_store.list_keys()[0].revoked_at
    orgs_store.revoke_key(_key_id(key))
    again = orgs_store.list_keys()[0].revoked_at
    assert (orgs_store.principal_for_key(key), again) == (None, first)


def test_revoke_unknown_key_refused(orgs_store: AccessStore) -> None:
    with pytest.raises(AccessStoreError, match="no key with id"):
        orgs_store.revoke_key("0" * 16)


def _stored(backing: Backing) -> bytes:
    """Every byte the store keeps: the SQLite file and its log, or every table's rows."""
    if backing.kind == "sqlite":
        return b"".join(path.read_bytes() for path in Path(backing.env["PROXY_DATA_DIR"]).glob("access*"))
    with psycopg.connect(backing.env["PROXY_ACCESS_DATABASE_URL"]) as conn:
        tables = ("organizations", "api_keys", "key_grants", "schema_version")
        return repr([conn.execute(f"SELECT * FROM {table}").fetchall() for table in tables]).encode()


def test_only_the_hash_is_stored(orgs_store: AccessStore, backing: Backing) -> None:
    key = orgs_store.create_key([ORG_A], "ci")
    secret = key.split("_", 2)[2]
    stored = _stored(backing)
    assert (key.encode() in stored, secret.encode() in stored, _key_id(key).encode() in stored) == (
        False,
        False,
        True,
    )


def test_migrations_apply_once_from_empty_and_again_change_nothing(store: AccessStore) -> None:
    assert (store.migrate(), store.migrate(), store.list_organizations()) == ([1], [], [])


def test_a_new_store_migrates_on_first_use(backing: Backing) -> None:
    if backing.kind == "sqlite":
        Path(backing.env["PROXY_DATA_DIR"]).mkdir(parents=True)
    first, second = backing.open(), backing.open()
    first.add_organization(ORG_A, "Acme")  # no explicit migrate: the first call does it
    assert ([org.id for org in second.list_organizations()], second.migrate()) == ([ORG_A], [])
    first.close()
    second.close()


@contextmanager
def _migration_lock_held(backing: Backing) -> Iterator[Callable[[], bool]]:
    """Hold the lock a migration takes, as a host migrating right now would; yields whether
    two others are waiting for it (PostgreSQL tells; for SQLite, a second's wait is assumed)."""
    if backing.kind == "sqlite":
        path = Path(backing.env["PROXY_DATA_DIR"]) / "access.sqlite3"
        path.parent.mkdir(parents=True)
        with closing(sqlite3.connect(path, isolation_level=None)) as lite:
            lite.execute("BEGIN IMMEDIATE")
            yield lambda: time.sleep(1) is None
            lite.execute("COMMIT")
        return
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    with psycopg.connect(backing.env["PROXY_ACCESS_DATABASE_URL"]) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
        with psycopg.connect(backing.env["PROXY_ACCESS_DATABASE_URL"], autocommit=True) as watcher:
            yield lambda: _eventually(lambda: watcher.execute(waiting).fetchone() == (2,))
        conn.commit()


def _eventually(condition: Callable[[], bool], secs: float = 30) -> bool:
    deadline = time.monotonic() + secs
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_migrate_from_two_processes_at_once_applies_each_version_once(backing: Backing) -> None:
    env = {**os.environ, **backing.env}
    with _migration_lock_held(backing) as both_waiting:
        running = [
            subprocess.Popen([*CLI, "access", "migrate"], env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        assert both_waiting()
    outputs = sorted(process.communicate(timeout=60)[0] for process in running)
    assert [process.returncode for process in running] == [0, 0]
    assert outputs == [
        f"{backing.kind} access store at schema version 1 (applied 1)\n",
        f"{backing.kind} access store at schema version 1 (nothing to apply)\n",
    ]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> AccessStore:
    store = AccessStore(tmp_path / "access.sqlite3")
    store.add_organization(ORG_A, "Acme")
    return store


def test_sqlite_schema_is_idempotent_and_in_wal_mode(sqlite_store: AccessStore, tmp_path: Path) -> None:
    path = tmp_path / "access.sqlite3"
    reopened = AccessStore(path)
    with sqlite3.connect(path) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        versions = conn.execute("SELECT version FROM schema_version").fetchall()
    assert (mode, versions, len(reopened.list_organizations())) == ("wal", [(1,)], 1)


def test_a_sqlite_file_made_before_schema_version_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "access.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE organizations (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO organizations VALUES (?, 'Acme', '2026-01-01T00:00:00+00:00')", (ORG_A,))
    store = AccessStore(path)
    assert ([org.id for org in store.list_organizations()], store.migrate()) == ([ORG_A], [])


def test_the_sqlite_file_and_its_log_are_the_owner_s_alone(sqlite_store: AccessStore, tmp_path: Path) -> None:
    sqlite_store.create_key([ORG_A], "ci")  # a write: the log and its index exist
    modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.glob("access.sqlite3*")}
    assert modes == {"access.sqlite3": 0o600, "access.sqlite3-wal": 0o600, "access.sqlite3-shm": 0o600}


_IN_PROCESS = """
import sys
from proxy.access.store import open_access_store
from proxy.settings import load_settings
store = open_access_store(load_settings())
{action}
store.close()
"""


def _in_process(backing: Backing, action: str, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", _IN_PROCESS.format(action=action), *args]
    return subprocess.Popen(command, env={**os.environ, **backing.env})


def _in_thread(backing: Backing, action: Callable[[AccessStore], object]) -> None:
    def run() -> None:
        store = backing.open()
        action(store)
        store.close()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()


def _revoke_in_thread(backing: Backing, key_id: str) -> None:
    _in_thread(backing, lambda store: store.revoke_key(key_id))


def _revoke_in_process(backing: Backing, key_id: str) -> None:
    assert _in_process(backing, "store.revoke_key(sys.argv[1])", key_id).wait(timeout=60) == 0


@pytest.mark.parametrize(
    "revoke_elsewhere",
    [pytest.param(_revoke_in_thread, id="thread"), pytest.param(_revoke_in_process, id="process")],
)
def test_revocation_by_another_worker_or_host_holds_on_the_next_lookup(
    orgs_store: AccessStore, backing: Backing, revoke_elsewhere: Callable[[Backing, str], None]
) -> None:
    key = orgs_store.create_key([ORG_A], "ci")
    assert orgs_store.principal_for_key(key) is not None
    revoke_elsewhere(backing, _key_id(key))
    assert orgs_store.principal_for_key(key) is None


def test_a_key_created_through_one_store_is_accepted_by_another(
    orgs_store: AccessStore, backing: Backing
) -> None:
    other = backing.open()
    key = orgs_store.create_key([ORG_A, ORG_B], "ci")
    assert other.principal_for_key(key) == Principal(f"key:{_key_id(key)}", frozenset({ORG_A, ORG_B}))
    other.close()


def _create_keys_in_threads(backing: Backing, workers: int) -> None:
    def create(_: int) -> None:
        store = backing.open()
        for _ in range(10):
            store.create_key([ORG_A], "thread")
        store.close()

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, range(workers)))


def _create_keys_in_processes(backing: Backing, workers: int) -> None:
    action = "for _ in range(10): store.create_key([sys.argv[1]], 'process')"
    running = [_in_process(backing, action, ORG_A) for _ in range(workers)]
    assert [process.wait(timeout=60) for process in running] == [0] * workers


@pytest.mark.parametrize(
    "create_concurrently",
    [
        pytest.param(_create_keys_in_threads, id="threads"),
        pytest.param(_create_keys_in_processes, id="processes"),
    ],
)
def test_concurrent_writers_all_succeed(
    orgs_store: AccessStore, backing: Backing, create_concurrently: Callable[[Backing, int], None]
) -> None:
    create_concurrently(backing, 6)
    assert len(orgs_store.list_keys()) == 60


_CLI = click.Group(commands={"orgs": orgs, "tokens": tokens, "access": access})


@pytest.fixture
def run(backing: Backing) -> Callable[..., click.testing.Result]:
    def invoke(*args: str) -> click.testing.Result:
        return CliRunner().invoke(_CLI, list(args), env=backing.env)

    return invoke


def test_cli_administers_orgs_and_keys(run: Callable[..., click.testing.Result], backing: Backing) -> None:
    run("orgs", "add", ORG_A, "--name", "Acme")
    created = run("tokens", "create", "--org", ORG_A, "--name", "ci")
    key = created.stdout.splitlines()[-1]
    key_id = _key_id(key)
    listed_before = run("tokens", "list").stdout
    revoked = run("tokens", "revoke", key_id)
    store = backing.open()
    assert (created.exit_code, revoked.exit_code, KEY_FORMAT.fullmatch(key) is not None) == (0, 0, True)
    assert run("orgs", "list").stdout.startswith(f"{ORG_A}\tAcme\t")
    assert listed_before.startswith(f"{key_id}\tci\t{ORG_A}\t") and "active" in listed_before
    assert key.split("_", 2)[2] not in listed_before
    assert "\trevoked " in run("tokens", "list").stdout
    assert store.principal_for_key(key) is None
    store.close()


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        pytest.param(("orgs", "add", "not-a-uuid"), 1, "is not a UUID", id="bad-org-id"),
        pytest.param(("tokens", "create", "--org", ORG_GONE), 1, "unknown organization", id="unknown-org"),
        pytest.param(("tokens", "create"), 2, "Missing option '--org'", id="no-org"),
        pytest.param(("tokens", "revoke", "0" * 16), 1, "no key with id", id="unknown-key"),
    ],
)
def test_cli_refuses(
    run: Callable[..., click.testing.Result], args: tuple[str, ...], exit_code: int, message: str
) -> None:
    result = run(*args)
    assert (result.exit_code, message in result.output, result.stdout) == (exit_code, True, "")


def _cli(backing: Backing, *args: str) -> str:
    done = subprocess.run(
        [*CLI, *args], env={**os.environ, **backing.env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_installed_cli_end_to_end(backing: Backing) -> None:
    """The `reporting-proxy` executable, as an operator runs it, against either store."""
    _cli(backing, "orgs", "add", ORG_A, "--name", "Acme")
    key = _cli(backing, "tokens", "create", "--org", ORG_A, "--name", "e2e").splitlines()[-1]
    store = backing.open()
    accepted = store.principal_for_key(key)
    _cli(backing, "tokens", "revoke", _key_id(key))
    assert (accepted, store.principal_for_key(key)) == (
        Principal(f"key:{_key_id(key)}", frozenset({ORG_A})),
        None,
    )
    assert _cli(backing, "tokens", "list").split("\t")[:3] == [_key_id(key), "e2e", ORG_A]
    store.close()
