"""The access store: organizations, hashed API keys, grants, revocation across workers; its CLI."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from proxy.access.principal import Principal
from proxy.access.store import AccessStore, AccessStoreError, KeyInfo
from proxyctl.access import orgs, tokens

ORG_A = "6f1e7c2a-0d55-4b8e-9f43-2b8c1d7a9e01"
ORG_B = "a3c9e5d1-7b2f-4e6a-8c0d-5f4e3b2a1c9d"
ORG_GONE = "00000000-0000-4000-8000-000000000000"
KEY_FORMAT = re.compile(r"rpk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


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


def test_only_the_hash_is_stored(orgs_store: AccessStore, tmp_path: Path) -> None:
    key = orgs_store.create_key([ORG_A], "ci")
    secret = key.split("_", 2)[2]
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("access.sqlite3*"))
    assert (key.encode() in stored, secret.encode() in stored) == (False, False)


def test_schema_is_idempotent_and_in_wal_mode(orgs_store: AccessStore, tmp_path: Path) -> None:
    path = tmp_path / "access.sqlite3"
    reopened = AccessStore(path)
    with sqlite3.connect(path) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert (mode, len(reopened.list_organizations())) == ("wal", 2)


def test_the_file_and_its_log_are_the_owner_s_alone(orgs_store: AccessStore, tmp_path: Path) -> None:
    orgs_store.create_key([ORG_A], "ci")  # a write: the log and its index exist
    modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.glob("access.sqlite3*")}
    assert modes == {"access.sqlite3": 0o600, "access.sqlite3-wal": 0o600, "access.sqlite3-shm": 0o600}


_REVOKE_IN_PROCESS = """
import sys
from pathlib import Path
from proxy.access.store import AccessStore
AccessStore(Path(sys.argv[1])).revoke_key(sys.argv[2])
"""


def _revoke_in_thread(path: Path, key_id: str) -> None:
    worker = threading.Thread(target=lambda: AccessStore(path).revoke_key(key_id))
    worker.start()
    worker.join()


def _revoke_in_process(path: Path, key_id: str) -> None:
    command = [sys.executable, "-c", _REVOKE_IN_PROCESS, str(path), key_id]
    subprocess.run(command, check=True, timeout=60)


@pytest.mark.parametrize(
    "revoke_elsewhere",
    [pytest.param(_revoke_in_thread, id="thread"), pytest.param(_revoke_in_process, id="process")],
)
def test_revocation_by_another_worker_holds_on_the_next_lookup(
    orgs_store: AccessStore, tmp_path: Path, revoke_elsewhere: Callable[[Path, str], None]
) -> None:
    key = orgs_store.create_key([ORG_A], "ci")
    assert orgs_store.principal_for_key(key) is not None
    revoke_elsewhere(tmp_path / "access.sqlite3", _key_id(key))
    assert orgs_store.principal_for_key(key) is None


_CREATE_KEYS_IN_PROCESS = """
import sys
from pathlib import Path
from proxy.access.store import AccessStore
store = AccessStore(Path(sys.argv[1]))
for _ in range(10):
    store.create_key([sys.argv[2]], "process")
"""


def _create_keys_in_threads(path: Path, workers: int) -> None:
    def create(_: int) -> None:
        store = AccessStore(path)
        for _ in range(10):
            store.create_key([ORG_A], "thread")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, range(workers)))


def _create_keys_in_processes(path: Path, workers: int) -> None:
    command = [sys.executable, "-c", _CREATE_KEYS_IN_PROCESS, str(path), ORG_A]
    running = [subprocess.Popen(command) for _ in range(workers)]
    assert [process.wait(timeout=60) for process in running] == [0] * workers


@pytest.mark.parametrize(
    "create_concurrently",
    [
        pytest.param(_create_keys_in_threads, id="threads"),
        pytest.param(_create_keys_in_processes, id="processes"),
    ],
)
def test_concurrent_writers_all_succeed(
    orgs_store: AccessStore, tmp_path: Path, create_concurrently: Callable[[Path, int], None]
) -> None:
    create_concurrently(tmp_path / "access.sqlite3", 6)
    assert len(orgs_store.list_keys()) == 60


_CLI = click.Group(commands={"orgs": orgs, "tokens": tokens})


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., click.testing.Result]:
    # A data dir that does not exist yet: the commands must create it.
    env = {"PROXY_DATA_DIR": str(tmp_path / "new" / "var")}

    def invoke(*args: str) -> click.testing.Result:
        return CliRunner().invoke(_CLI, list(args), env=env)

    return invoke


def test_cli_administers_orgs_and_keys(run: Callable[..., click.testing.Result], tmp_path: Path) -> None:
    run("orgs", "add", ORG_A, "--name", "Acme")
    created = run("tokens", "create", "--org", ORG_A, "--name", "ci")
    key = created.stdout.splitlines()[-1]
    key_id = _key_id(key)
    listed_before = run("tokens", "list").stdout
    revoked = run("tokens", "revoke", key_id)
    store = AccessStore(tmp_path / "new" / "var" / "access.sqlite3")
    assert (created.exit_code, revoked.exit_code, KEY_FORMAT.fullmatch(key) is not None) == (0, 0, True)
    assert run("orgs", "list").stdout.startswith(f"{ORG_A}\tAcme\t")
    assert listed_before.startswith(f"{key_id}\tci\t{ORG_A}\t") and "active" in listed_before
    assert key.split("_", 2)[2] not in listed_before
    assert "\trevoked " in run("tokens", "list").stdout
    assert store.principal_for_key(key) is None


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
