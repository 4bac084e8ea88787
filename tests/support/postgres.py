"""Databases of their own on the local PostgreSQL that `make test` starts (`reporting-proxy postgres up`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from proxyctl.postgres.cluster import DEFAULT_PORT, SUPERUSER

_PORT = int(os.environ.get("PROXY_POSTGRES_LOCAL_PORT", DEFAULT_PORT))


def server_url(database: str = "postgres") -> str:
    """The URL of a database on the local server."""
    return f"postgresql://{SUPERUSER}@127.0.0.1:{_PORT}/{database}"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(server_url(), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"no local PostgreSQL at {server_url()}: run `reporting-proxy postgres up` (make test does)"
        ) from exc


@contextmanager
def fresh_database(prefix: str = "test") -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (ending its sessions) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server_url(name)
    finally:
        with _admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
