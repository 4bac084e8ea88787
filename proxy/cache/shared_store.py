"""The result cache's store shared by every host, in PostgreSQL (`PROXY_CACHE_DATABASE_URL`).

One UNLOGGED table of answers (a cache needs no WAL; a crash empties it) and a one-row total of
their bytes, kept by the same statements that change the answers so the bound is checked
without a scan:

    proxy_result_cache         key → answer, its bytes, expiry, last use
    proxy_result_cache_volume  the bytes of every answer

- A read is one statement that returns an unexpired answer and marks it used (the LRU order).
- A write is one call of `proxy_cache_put_v1`: under a transaction-scoped advisory lock (writes
  of every host queue there, reads never), it drops expired answers, stores this one, and while
  the total is over the bound drops the least recently used; it returns how many went.
- Every call is bounded (`TIMEOUT_SECS`, on the per-process pools of the other shared stores,
  `proxy.runtime.postgres_pool`); a failed call is a miss, never an error: a cache never fails
  a request.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from functools import partial
from typing import Any

import psycopg

from proxy.runtime.postgres_pool import STORE_ERRORS, ProcessPool, connection_pool, create_schema_once

log = logging.getLogger(__name__)

_WARN_EVERY_SECS = 60.0
_POOL_SIZE = 8
# A store slower than this is not worth waiting for: the miss it becomes asks the backend.
TIMEOUT_SECS = 0.5
_SCHEMA = 1
_SCHEMA_LOCK = 0x5250_4341_4300 + _SCHEMA
_WRITE_LOCK = 0x5250_4341_4357
_CREATE = f"""
CREATE UNLOGGED TABLE IF NOT EXISTS proxy_result_cache (
    key text PRIMARY KEY,
    body bytea NOT NULL,
    bytes bigint NOT NULL,
    expires timestamptz,
    used timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS proxy_result_cache_used ON proxy_result_cache (used);
CREATE UNLOGGED TABLE IF NOT EXISTS proxy_result_cache_volume (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    total bigint NOT NULL
);
INSERT INTO proxy_result_cache_volume VALUES (true, 0) ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION proxy_cache_put_v{_SCHEMA}(
    key_ text, body_ bytea, lifetime interval, max_bytes bigint
) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz;
    freed bigint;
    evicted int := 0;
    total_ bigint;
    oldest text;
BEGIN
    PERFORM pg_advisory_xact_lock({_WRITE_LOCK});
    now_ := clock_timestamp();
    WITH gone AS (
        DELETE FROM proxy_result_cache WHERE key = key_ OR expires <= now_ RETURNING bytes
    ) SELECT coalesce(sum(bytes), 0) INTO freed FROM gone;
    IF octet_length(body_) <= max_bytes THEN
        INSERT INTO proxy_result_cache VALUES (key_, body_, octet_length(body_), now_ + lifetime, now_);
        freed := freed - octet_length(body_);
    END IF;
    UPDATE proxy_result_cache_volume SET total = total - freed RETURNING total INTO total_;
    WHILE total_ > max_bytes LOOP
        SELECT key INTO oldest FROM proxy_result_cache ORDER BY used LIMIT 1;
        IF oldest IS NULL THEN  -- nothing left to drop: the total drifted, start it again
            UPDATE proxy_result_cache_volume SET total = 0;
            EXIT;
        END IF;
        WITH gone AS (DELETE FROM proxy_result_cache WHERE key = oldest RETURNING bytes)
        UPDATE proxy_result_cache_volume SET total = total - (SELECT bytes FROM gone)
        RETURNING total INTO total_;
        evicted := evicted + 1;
    END LOOP;
    RETURN evicted;
END
$$;
"""
_EXISTS = f"SELECT to_regprocedure('proxy_cache_put_v{_SCHEMA}(text,bytea,interval,bigint)')"
_GET = """
UPDATE proxy_result_cache SET used = clock_timestamp()
WHERE key = %s AND (expires IS NULL OR expires > clock_timestamp())
RETURNING body
"""
_PUT = f"SELECT proxy_cache_put_v{_SCHEMA}(%s, %s, %s, %s)"
_VOLUME = "SELECT total FROM proxy_result_cache_volume"


def create_schema(connection: psycopg.Connection[Any]) -> None:
    """The tables and the write function, unless this schema version has them already."""
    create_schema_once(connection, _EXISTS, _SCHEMA_LOCK, _CREATE)


class PostgresStore:
    """A `ResultStore` every host shares: bounded in bytes, least recently used evicted first."""

    def __init__(self, url: str, max_bytes: int, timeout_secs: float = TIMEOUT_SECS) -> None:
        self.max_bytes = max_bytes
        self._timeout_secs = timeout_secs
        self._pool = ProcessPool(
            partial(connection_pool, url, timeout_secs, "result-cache", _POOL_SIZE, create_schema)
        )
        self._warned_at = -math.inf

    def get(self, key: str) -> bytes | None:
        """The answer stored under `key`, None when absent, expired or unreachable."""
        row = self._call("read", _GET, (key,))
        return None if row is None else bytes(row[0])

    def put(self, key: str, body: bytes, lifetime_secs: float | None) -> int:
        """Store an answer (for `lifetime_secs`, or until evicted); the entries evicted to fit."""
        lifetime = None if lifetime_secs is None else timedelta(seconds=lifetime_secs)
        row = self._call("write", _PUT, (key, body, lifetime, self.max_bytes))
        return 0 if row is None else int(row[0])

    def volume(self) -> int:
        """Bytes the store holds now (0 when unreachable)."""
        row = self._call("volume", _VOLUME, ())
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        """Close this process's connections."""
        self._pool.close()

    def _call(self, what: str, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        try:
            with self._pool.connection(self._timeout_secs) as connection:
                return connection.execute(sql, params).fetchone()
        except STORE_ERRORS as exc:
            if time.monotonic() - self._warned_at >= _WARN_EVERY_SECS:
                self._warned_at = time.monotonic()
                log.warning("shared result cache %s failed (%s); answering without it", what, exc)
            return None
