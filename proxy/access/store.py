"""Organizations and API keys in one SQLite file shared by every worker process and thread.

Keys look like `rpk_<key id>_<secret>`; only the key id and a hash of the whole key are stored.
Nothing is cached: every lookup reads the file, so a revocation holds on the very next request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from proxy.access.principal import Principal, canonical_organization_id
from proxy.runtime.data_dir import private_sqlite_file
from proxy.runtime.sqlite_connections import ThreadConnections

# Waiting this long for another worker's write lock beats failing with "database is locked".
_BUSY_TIMEOUT_SECS = 10.0
_KEY_PATTERN = re.compile(r"rpk_(?P<key_id>[0-9a-f]{16})_[A-Za-z0-9_-]{43}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash BLOB NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS key_grants (
    key_id TEXT NOT NULL REFERENCES api_keys (id),
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    PRIMARY KEY (key_id, organization_id)
);
"""


class AccessStoreError(ValueError):
    """An administrative request the access store refuses (bad id, unknown org or key)."""


@dataclass(frozen=True)
class Organization:
    """A tenant whose sessions a principal may be granted to read."""

    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about an API key: never the key, never its hash."""

    id: str
    name: str
    organizations: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        """Whether the key has been revoked."""
        return self.revoked_at is not None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _key_hash(key: str) -> bytes:
    # The key carries 256 random bits (secrets.token_urlsafe), so no guessing attack can
    # work against a fast hash; a slow password hash would only slow down every request.
    return hashlib.sha256(key.encode()).digest()


class AccessStore:
    """Organizations, hashed API keys and their grants, in the SQLite file at `path`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        private_sqlite_file(path)  # key hashes and grants: this user's alone, its log too
        self._connections = ThreadConnections(path, _BUSY_TIMEOUT_SECS, ["PRAGMA foreign_keys = ON"])
        with self._connect() as conn:
            # WAL lets readers in other workers go on while one worker writes; the mode is
            # stored in the file, so setting it once at start-up covers every connection.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        # A connection per thread and process: nothing is shared across threads or inherited
        # through gunicorn's fork. Autocommit, so every read sees the latest revocation.
        return self._connections.connection()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._connections.write()

    def add_organization(self, organization_id: str, name: str) -> None:
        """Register an organization; its id must be a UUID not registered yet."""
        org_id = _checked_organization_id(organization_id)
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO organizations (id, name, created_at) VALUES (?, ?, ?)",
                    (org_id, name, _now()),
                )
        except sqlite3.IntegrityError as exc:
            raise AccessStoreError(f"organization {org_id} already exists") from exc

    def list_organizations(self) -> list[Organization]:
        """Every organization, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, name, created_at FROM organizations ORDER BY created_at, id"
            ).fetchall()
        return [Organization(org_id, name, datetime.fromisoformat(created)) for org_id, name, created in rows]

    def organization_exists(self, organization_id: str) -> bool:
        """Whether the organization is registered; a malformed id is simply not."""
        try:
            org_id = canonical_organization_id(organization_id)
        except ValueError:
            return False
        with self._connect() as conn:
            row = conn.execute("SELECT 1 FROM organizations WHERE id = ?", (org_id,)).fetchone()
        return row is not None

    def create_key(self, organization_ids: Iterable[str], name: str) -> str:
        """Create a key granted to the organizations; the plaintext is returned only here."""
        org_ids = sorted({_checked_organization_id(org_id) for org_id in organization_ids})
        if not org_ids:
            raise AccessStoreError("a key must be granted to at least one organization")
        key_id = secrets.token_hex(8)
        key = f"rpk_{key_id}_{secrets.token_urlsafe(32)}"
        with self._write() as conn:
            _require_organizations(conn, org_ids)
            conn.execute(
                "INSERT INTO api_keys (id, name, key_hash, created_at) VALUES (?, ?, ?, ?)",
                (key_id, name, _key_hash(key), _now()),
            )
            conn.executemany(
                "INSERT INTO key_grants (key_id, organization_id) VALUES (?, ?)",
                [(key_id, org_id) for org_id in org_ids],
            )
        return key

    def list_keys(self) -> list[KeyInfo]:
        """Every key with its grants, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT k.id, k.name, group_concat(g.organization_id), k.created_at, k.revoked_at"
                " FROM api_keys k LEFT JOIN key_grants g ON g.key_id = k.id"
                " GROUP BY k.id ORDER BY k.created_at, k.id"
            ).fetchall()
        return [_key_info(*row) for row in rows]

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key for every worker at once; revoking it again changes nothing."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM api_keys WHERE id = ?", (key_id,)).fetchone() is None:
                raise AccessStoreError(f"no key with id {key_id!r}")
            conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (_now(), key_id),
            )

    def principal_for_key(self, key: str) -> Principal | None:
        """The principal a presented key stands for; None if malformed, unknown or revoked."""
        match = _KEY_PATTERN.fullmatch(key)
        if match is None:
            return None
        key_id = match["key_id"]
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT k.key_hash, k.revoked_at, g.organization_id"
                " FROM api_keys k LEFT JOIN key_grants g ON g.key_id = k.id WHERE k.id = ?",
                (key_id,),
            ).fetchall()
        if not rows or not hmac.compare_digest(rows[0][0], _key_hash(key)):
            return None
        if rows[0][1] is not None:
            return None
        orgs = frozenset(org_id for _, _, org_id in rows if org_id is not None)
        return Principal(name=f"key:{key_id}", organizations=orgs)


def _checked_organization_id(organization_id: str) -> str:
    try:
        return canonical_organization_id(organization_id)
    except ValueError as exc:
        raise AccessStoreError(f"organization id {organization_id!r} is not a UUID") from exc


def _require_organizations(conn: sqlite3.Connection, org_ids: list[str]) -> None:
    marks = ", ".join("?" * len(org_ids))
    rows = conn.execute(f"SELECT id FROM organizations WHERE id IN ({marks})", org_ids).fetchall()
    missing = sorted(set(org_ids) - {org_id for (org_id,) in rows})
    if missing:
        raise AccessStoreError(f"unknown organization(s): {', '.join(missing)}")


def _key_info(key_id: str, name: str, orgs: str | None, created: str, revoked: str | None) -> KeyInfo:
    return KeyInfo(
        id=key_id,
        name=name,
        organizations=tuple(sorted(orgs.split(","))) if orgs else (),
        created_at=datetime.fromisoformat(created),
        revoked_at=datetime.fromisoformat(revoked) if revoked else None,
    )
