"""Organizations and API keys: one store, in this host's SQLite file or in a PostgreSQL all hosts share.

Keys look like `rpk_<key id>_<secret>`; only the key id and a hash of the whole key are stored,
and a presented key's hash is compared in constant time. Nothing is cached: every lookup asks the
database, so a revocation holds on the very next request, in every worker of every host.

A call the database cannot answer (down, too slow, refusing) raises AccessStoreUnavailable
(503 `access_store_unavailable`): an API key is then neither accepted nor refused.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from proxy.access.database import Database, Dialect, PostgresDatabase, Session, SqliteDatabase
from proxy.access.migrations import migrate
from proxy.access.principal import Principal, canonical_organization_id
from proxy.errors import AccessStoreUnavailable
from proxy.runtime.metrics import observe_access_store
from proxy.settings import Settings

log = logging.getLogger(__name__)

_WARN_EVERY_SECS = 60.0
_KEY_PATTERN = re.compile(r"rpk_(?P<key_id>[0-9a-f]{16})_[A-Za-z0-9_-]{43}")


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


def _timestamp(value: str | datetime) -> datetime:
    # SQLite keeps ISO text; PostgreSQL's timestamptz comes back in the session's zone.
    return (datetime.fromisoformat(value) if isinstance(value, str) else value).astimezone(UTC)


def _key_hash(key: str) -> bytes:
    # The key carries 256 random bits (secrets.token_urlsafe), so no guessing attack can
    # work against a fast hash; a slow password hash would only slow down every request.
    return hashlib.sha256(key.encode()).digest()


class AccessStore:
    """Organizations, hashed API keys and their grants, in `database` (a path: that SQLite file),
    its schema migrated on first use."""

    def __init__(self, database: Database | Path) -> None:
        self._db = SqliteDatabase(database) if isinstance(database, Path) else database
        self._migrated = False
        self._warned_at = -math.inf

    @property
    def kind(self) -> Dialect:
        """Which database holds the store: `sqlite` or `postgres`."""
        return self._db.dialect

    def migrate(self) -> list[int]:
        """Apply the schema migrations the database lacks; the versions applied."""
        with self._call("migrate"):
            applied = migrate(self._db)
        self._migrated = True
        return applied

    def readiness(self) -> str:
        """`ok` when the database answers within the timeout, else `unavailable`."""
        try:
            with self._read("ready") as db:
                db.run("SELECT 1")
        except AccessStoreUnavailable:
            return "unavailable"
        return "ok"

    def close(self) -> None:
        """Close this process's connections."""
        self._db.close()

    @contextmanager
    def _call(self, operation: str) -> Iterator[None]:
        """Time the call, and map the driver's failures to AccessStoreUnavailable."""
        started, failed = time.perf_counter(), False
        try:
            yield
        except self._db.errors as exc:
            failed = True
            self._warn(f"access store ({self.kind}) {operation} failed: {type(exc).__name__}: {exc}")
            raise AccessStoreUnavailable("The access store cannot be reached; try again shortly.") from exc
        finally:
            observe_access_store(self.kind, operation, time.perf_counter() - started, failed)

    def _warn(self, message: str) -> None:
        # Once a minute: a database that is down stays so for many requests.
        if time.monotonic() - self._warned_at >= _WARN_EVERY_SECS:
            self._warned_at = time.monotonic()
            log.warning(message)

    def _ensure_schema(self) -> None:
        # On first use rather than at construction: a worker starts (and serves JWT callers)
        # while the database is down, and migrates once it answers.
        if not self._migrated:
            migrate(self._db)
            self._migrated = True

    @contextmanager
    def _read(self, operation: str) -> Iterator[Session]:
        with self._call(operation):
            self._ensure_schema()
            with self._db.session() as session:
                yield session

    @contextmanager
    def _write(self, operation: str) -> Iterator[Session]:
        with self._call(operation):
            self._ensure_schema()
            with self._db.transaction() as session:
                yield session

    def add_organization(self, organization_id: str, name: str) -> None:
        """Register an organization; its id must be a UUID not registered yet."""
        org_id = _checked_organization_id(organization_id)
        with self._write("add_organization") as db:
            added = db.run(
                "INSERT INTO organizations (id, name, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING RETURNING id",
                (org_id, name, _now()),
            )
        if not added:
            raise AccessStoreError(f"organization {org_id} already exists")

    def list_organizations(self) -> list[Organization]:
        """Every organization, oldest first."""
        with self._read("list_organizations") as db:
            rows = db.run("SELECT id, name, created_at FROM organizations ORDER BY created_at, id")
        return [Organization(org_id, name, _timestamp(created)) for org_id, name, created in rows]

    def organization_exists(self, organization_id: str) -> bool:
        """Whether the organization is registered; a malformed id is simply not."""
        try:
            org_id = canonical_organization_id(organization_id)
        except ValueError:
            return False
        with self._read("organization_exists") as db:
            return bool(db.run("SELECT 1 FROM organizations WHERE id = ?", (org_id,)))

    def create_key(self, organization_ids: Iterable[str], name: str) -> str:
        """Create a key granted to the organizations; the plaintext is returned only here."""
        org_ids = sorted({_checked_organization_id(org_id) for org_id in organization_ids})
        if not org_ids:
            raise AccessStoreError("a key must be granted to at least one organization")
        key_id = secrets.token_hex(8)
        key = f"rpk_{key_id}_{secrets.token_urlsafe(32)}"
        with self._write("create_key") as db:
            _require_organizations(db, org_ids)
            db.run(
                "INSERT INTO api_keys (id, name, key_hash, created_at) VALUES (?, ?, ?, ?)",
                (key_id, name, _key_hash(key), _now()),
            )
            for org_id in org_ids:
                db.run("INSERT INTO key_grants (key_id, organization_id) VALUES (?, ?)", (key_id, org_id))
        return key

    def list_keys(self) -> list[KeyInfo]:
        """Every key with its grants, oldest first."""
        with self._read("list_keys") as db:
            rows = db.run(
                "SELECT k.id, k.name, k.created_at, k.revoked_at, g.organization_id"
                " FROM api_keys k LEFT JOIN key_grants g ON g.key_id = k.id"
                " ORDER BY k.created_at, k.id, g.organization_id"
            )
        keys: dict[str, KeyInfo] = {}
        for key_id, name, created, revoked, org_id in rows:
            key = keys.get(key_id) or _key_info(key_id, name, created, revoked)
            keys[key_id] = replace(key, organizations=(*key.organizations, org_id)) if org_id else key
        return list(keys.values())

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key for every worker of every host at once; revoking it again changes nothing."""
        with self._write("revoke_key") as db:
            if not db.run("SELECT 1 FROM api_keys WHERE id = ?", (key_id,)):
                raise AccessStoreError(f"no key with id {key_id!r}")
            db.run("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (_now(), key_id))

    def principal_for_key(self, key: str) -> Principal | None:
        """The principal a presented key stands for; None if malformed, unknown or revoked."""
        match = _KEY_PATTERN.fullmatch(key)
        if match is None:
            return None
        key_id = match["key_id"]
        with self._read("principal_for_key") as db:
            rows = db.run(
                "SELECT k.key_hash, k.revoked_at, g.organization_id"
                " FROM api_keys k LEFT JOIN key_grants g ON g.key_id = k.id WHERE k.id = ?",
                (key_id,),
            )
        if not rows or not hmac.compare_digest(bytes(rows[0][0]), _key_hash(key)):
            return None
        if rows[0][1] is not None:
            return None
        orgs = frozenset(org_id for _, _, org_id in rows if org_id is not None)
        return Principal(name=f"key:{key_id}", organizations=orgs)


def open_access_store(settings: Settings) -> AccessStore:
    """The store the settings name: PROXY_ACCESS_DATABASE_URL's PostgreSQL, else the data dir's SQLite file."""
    if settings.access_database_url:
        return AccessStore(PostgresDatabase(settings.access_database_url, settings.access_store_timeout_secs))
    return AccessStore(SqliteDatabase(settings.access_db_path))


def _checked_organization_id(organization_id: str) -> str:
    try:
        return canonical_organization_id(organization_id)
    except ValueError as exc:
        raise AccessStoreError(f"organization id {organization_id!r} is not a UUID") from exc


def _require_organizations(db: Session, org_ids: list[str]) -> None:
    marks = ", ".join("?" * len(org_ids))
    rows = db.run(f"SELECT id FROM organizations WHERE id IN ({marks})", org_ids)
    missing = sorted(set(org_ids) - {org_id for (org_id,) in rows})
    if missing:
        raise AccessStoreError(f"unknown organization(s): {', '.join(missing)}")


def _key_info(key_id: str, name: str, created: str | datetime, revoked: str | datetime | None) -> KeyInfo:
    return KeyInfo(
        id=key_id,
        name=name,
        organizations=(),
        created_at=_timestamp(created),
        revoked_at=_timestamp(revoked) if revoked else None,
    )
