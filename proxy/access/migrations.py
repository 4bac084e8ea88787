"""The access store's schema, as numbered migrations per database, applied once each.

`schema_version` holds one row per applied migration. `migrate` runs in one transaction that
first takes a lock every host and worker contends for (PostgreSQL: an advisory lock; SQLite: the
write lock of `BEGIN IMMEDIATE`), so two hosts starting together apply each migration once and
the second sees the first's work. Migrations are only ever appended, never edited.
"""

from __future__ import annotations

from datetime import UTC, datetime

from proxy.access.database import Database, Dialect

Migration = tuple[str, ...]

_V1_SQLITE: Migration = (
    # IF NOT EXISTS: files made before schema_version existed already hold these tables.
    "CREATE TABLE IF NOT EXISTS organizations ("
    " id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS api_keys ("
    " id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash BLOB NOT NULL,"
    " created_at TEXT NOT NULL, revoked_at TEXT)",
    "CREATE TABLE IF NOT EXISTS key_grants ("
    " key_id TEXT NOT NULL REFERENCES api_keys (id),"
    " organization_id TEXT NOT NULL REFERENCES organizations (id),"
    " PRIMARY KEY (key_id, organization_id))",
)
_V1_POSTGRES: Migration = (
    "CREATE TABLE organizations (id text PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL)",
    "CREATE TABLE api_keys ("
    " id text PRIMARY KEY, name text NOT NULL, key_hash bytea NOT NULL,"
    " created_at timestamptz NOT NULL, revoked_at timestamptz)",
    "CREATE TABLE key_grants ("
    " key_id text NOT NULL REFERENCES api_keys (id),"
    " organization_id text NOT NULL REFERENCES organizations (id),"
    " PRIMARY KEY (key_id, organization_id))",
)

# Version n is the n-th entry.
MIGRATIONS: dict[Dialect, tuple[Migration, ...]] = {
    "sqlite": (_V1_SQLITE,),
    "postgres": (_V1_POSTGRES,),
}

_VERSION_TABLE: dict[Dialect, str] = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    "postgres": "CREATE TABLE IF NOT EXISTS schema_version"
    " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)",
}

# "rpxacces" in ASCII: the advisory lock key of this schema, whatever else shares the database.
ADVISORY_LOCK = 0x7270_7861_6363_6573
_LOCK: dict[Dialect, Migration] = {
    "sqlite": (),  # the transaction's BEGIN IMMEDIATE already holds the file's write lock
    "postgres": (
        # A migration may take longer than a request's call; a host waiting for another's
        # migration waits for it.
        "SET LOCAL statement_timeout = '60s'",
        "SET LOCAL lock_timeout = '60s'",
        f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})",
    ),
}


def migrate(database: Database) -> list[int]:
    """Apply the migrations the database lacks, in order; the versions applied (none: up to date)."""
    migrations = MIGRATIONS[database.dialect]
    with database.transaction() as tx:
        for statement in _LOCK[database.dialect]:
            tx.run(statement)
        tx.run(_VERSION_TABLE[database.dialect])
        current = int(tx.run("SELECT coalesce(max(version), 0) FROM schema_version")[0][0])
        applied = list(range(current + 1, len(migrations) + 1))
        for version in applied:
            for statement in migrations[version - 1]:
                tx.run(statement)
            tx.run(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (version, datetime.now(UTC).isoformat()),
            )
    return applied


def latest_version(dialect: Dialect) -> int:
    """The version a database of this kind is at once migrated."""
    return len(MIGRATIONS[dialect])
