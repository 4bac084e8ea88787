"""Rate and concurrency limits shared by every host, in PostgreSQL (`PROXY_LIMITS_DATABASE_URL`).

The same rules as the host's table (`proxy.runtime.limits.rules`), counted in two tables:

    proxy_limit_keys    key digest → theoretical arrival time (GCRA), one row per key
    proxy_limit_leases  (key, lease) → expiry: a running query's slot on each limited key

- One round trip per admission: `proxy_limits_admit_v2(...)` locks the request's key rows (in key
  order, so two admissions never deadlock), checks every rate and every key's live leases, and
  only if all pass advances the arrival times and writes the leases. One more per release: the
  lease's rows deleted. Row locks serialize the admissions of one key across every host.
- Time is the database's (`clock_timestamp()`): the hosts' clocks never meet, so a host whose
  clock is off by minutes counts the same as the others.
- A slot is a lease that expires once no query could still be running (`stale_slot_secs`): a
  host that dies holding slots (or loses the database during a release) leaves rows that stop
  counting by themselves, and are deleted by the next admission of their key or by the purge.
- Every few minutes each worker purges expired leases and the keys that carry no state, on a
  thread and a connection of their own: housekeeping never holds a request nor counts as a
  failure of the store.
- The tables are UNLOGGED: counters worth a minute need no WAL; a database crash empties them,
  which admits at most one more burst.
- Every call is bounded by `PROXY_LIMITS_STORE_TIMEOUT_SECS`, and skipped for a second after
  one failed (`proxy.runtime.postgres_pool`). A call that fails admits the request unlimited and
  logs, or with `PROXY_LIMITS_ON_STORE_ERROR=closed` refuses it with 503 `limits_unavailable`;
  the pool reconnects by itself once the database is back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from functools import partial
from typing import Any

import psycopg

from proxy.errors import LimitsUnavailable
from proxy.runtime.limits import Admission, Limits, Release, Rule, key_digests, organization_digest, rules
from proxy.runtime.metrics import observe_limits_store
from proxy.runtime.postgres_pool import (
    STORE_ERRORS,
    ProcessPool,
    StoreDown,
    connection_pool,
    create_schema_once,
)
from proxy.settings import LimitsOnError

log = logging.getLogger(__name__)

_WARN_EVERY_SECS = 60.0
_WINDOW_US = 60 * 10**6
# Connections per worker process: one per serving thread is the most it can use at once.
_POOL_SIZE = 8

# Created at the first connection, under an advisory lock so that workers starting together do
# not race on the catalog. Bump `_SCHEMA` with any change below: a database that has the previous
# version gets the new function beside the old one, on the same tables, so the hosts not yet
# upgraded keep admitting through theirs during a rolling upgrade (the tables change only in ways
# both versions can use).
_SCHEMA = 2
_SCHEMA_LOCK = 0x5250_4C49_4D00 + _SCHEMA
_CREATE = f"""
CREATE UNLOGGED TABLE IF NOT EXISTS proxy_limit_keys (
    key bytea PRIMARY KEY,
    tat timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE UNLOGGED TABLE IF NOT EXISTS proxy_limit_leases (
    key bytea NOT NULL,
    lease uuid NOT NULL,
    expires timestamptz NOT NULL,
    PRIMARY KEY (key, lease)
);
CREATE INDEX IF NOT EXISTS proxy_limit_leases_lease ON proxy_limit_leases (lease);

-- Per key: per_mins 0 (no rate), advances false (a rate only checked), concurrents -1 (no lease),
-- 0 (a lease, no limit). refused: the 1-based index of the key that refused (0: admitted); full:
-- by its slots, else by its rate, retry_after seconds from now.
CREATE OR REPLACE FUNCTION proxy_limits_admit_v{_SCHEMA}(
    keys bytea[], per_mins int[], advances boolean[], concurrents int[], lease uuid, lease_secs float8
) RETURNS TABLE (refused int, full_ boolean, retry_after int)
LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz;
    tats timestamptz[] := '{{}}';
    stored timestamptz;
    held bigint;
BEGIN
    -- Locks every key row, in key order. DO UPDATE, not DO NOTHING: it locks a row that exists,
    -- and inserts it again if the purge deleted it meanwhile; DO NOTHING locks nothing, and a
    -- purge between it and a later FOR UPDATE would leave the key unlocked (its admissions not
    -- serialized, its arrival time not written). Every row is now either inserted or updated
    -- by this transaction, so no FOR UPDATE follows.
    INSERT INTO proxy_limit_keys AS t (key) SELECT k FROM unnest(keys) AS k ORDER BY k
        ON CONFLICT (key) DO UPDATE SET tat = t.tat;
    now_ := clock_timestamp();  -- after the wait for the locks
    FOR i IN 1 .. cardinality(keys) LOOP
        IF per_mins[i] > 0 THEN
            SELECT tat INTO stored FROM proxy_limit_keys WHERE key = keys[i];
            -- Whole microseconds, rounded down: per_min intervals never sum past the window.
            tats[i] := greatest(stored, now_) + ({_WINDOW_US} / per_mins[i]) * interval '1 microsecond';
            IF tats[i] - now_ > interval '60 seconds' THEN
                RETURN QUERY SELECT i, false,
                    ceil(extract(epoch FROM tats[i] - now_ - interval '60 seconds'))::int;
                RETURN;
            END IF;
        END IF;
    END LOOP;
    FOR i IN 1 .. cardinality(keys) LOOP
        IF lease IS NOT NULL AND concurrents[i] >= 0 THEN
            DELETE FROM proxy_limit_leases AS l WHERE l.key = keys[i] AND l.expires <= now_;
            IF concurrents[i] > 0 THEN
                SELECT count(*) INTO held FROM proxy_limit_leases AS l WHERE l.key = keys[i];
                IF held >= concurrents[i] THEN
                    RETURN QUERY SELECT i, true, 1;
                    RETURN;
                END IF;
            END IF;
        END IF;
    END LOOP;
    FOR i IN 1 .. cardinality(keys) LOOP
        IF per_mins[i] > 0 AND advances[i] THEN
            UPDATE proxy_limit_keys SET tat = tats[i] WHERE key = keys[i];
        END IF;
        IF lease IS NOT NULL AND concurrents[i] >= 0 THEN
            INSERT INTO proxy_limit_leases VALUES (keys[i], lease, now_ + make_interval(secs => lease_secs));
        END IF;
    END LOOP;
    RETURN QUERY SELECT 0, false, 0;
END
$$;
"""
_EXISTS = (
    f"SELECT to_regprocedure('proxy_limits_admit_v{_SCHEMA}(bytea[],int[],boolean[],int[],uuid,float8)')"
)
_ADMIT = f"SELECT * FROM proxy_limits_admit_v{_SCHEMA}(%s, %s, %s, %s, %s, %s)"
_RELEASE = "DELETE FROM proxy_limit_leases WHERE lease = %s"
_COUNT_INVALID = """
INSERT INTO proxy_limit_keys AS k (key, tat) VALUES (%(key)s, clock_timestamp() + %(step)s)
ON CONFLICT (key) DO UPDATE SET tat = greatest(k.tat, clock_timestamp()) + %(step)s
"""
_HELD = "SELECT count(*) FROM proxy_limit_leases WHERE key = %s AND expires > clock_timestamp()"
# Each worker now and then deletes a batch of expired leases (a dead host's, of keys no admission
# meets again), then of keys that carry no state: an arrival time over a minute past (the next
# request meets the key as new) and no live lease. The tables hold the keys in use rather than
# every credential ever seen. Both skip the rows that are locked, so the purge never waits for an
# admission (nor deadlocks with one deleting the same expired leases); an admission that meets a
# key row the purge is deleting waits for it, then inserts the key again and holds its lock. A
# key row carries only its arrival time: deleting one loses at most a time over a minute past.
_PURGE = (
    """
DELETE FROM proxy_limit_leases WHERE (key, lease) IN (
    SELECT key, lease FROM proxy_limit_leases
    WHERE expires <= clock_timestamp()
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
""",
    """
DELETE FROM proxy_limit_keys WHERE key IN (
    SELECT k.key FROM proxy_limit_keys AS k
    WHERE k.tat < clock_timestamp() - %(idle)s
      AND NOT EXISTS (
          SELECT 1 FROM proxy_limit_leases AS l WHERE l.key = k.key AND l.expires > clock_timestamp()
      )
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
""",
)
_PURGE_PARAMS = {"idle": timedelta(minutes=1), "batch": 1000}
_PURGE_EVERY_SECS = 300.0
# The purge's own bound per statement: it runs off the request path, so it may take longer than
# an admission, but never holds its thread (and so the next purge) for long.
_PURGE_TIMEOUT_SECS = 5.0
_PURGE_CONNECT_TIMEOUT_SECS = 2  # libpq's floor


def create_schema(connection: psycopg.Connection[Any]) -> None:
    """The tables and the admission function, unless this schema version has them already."""
    create_schema_once(connection, _EXISTS, _SCHEMA_LOCK, _CREATE)


class SharedLimiter(Admission):
    """Admits a query or raises TooManyRequests; the state is shared through PostgreSQL."""

    def __init__(
        self, url: str, limits: Limits, on_error: LimitsOnError = "open", timeout_secs: float = 0.3
    ) -> None:
        self.limits = limits
        self._on_error = on_error
        self._timeout_secs = timeout_secs
        self._rules = rules(limits)
        self._counts_slots = bool(limits.concurrent_per_org or limits.concurrent_per_principal)
        # No query lives that long (twice the request budget and a minute, `Limits`).
        self._lease_secs = limits.stale_slot_secs
        self._url = url
        self._pool = ProcessPool(
            partial(connection_pool, url, timeout_secs, "limits", _POOL_SIZE, create_schema)
        )
        self._warned_at = -math.inf
        self._purge_at = time.monotonic() + _PURGE_EVERY_SECS
        self._purge_lock = threading.Lock()
        self._purge_thread: threading.Thread | None = None

    def count_invalid(self, organization: str, principal: str) -> None:
        """Charge one invalid request to the principal's budget of them."""
        per_min = self.limits.invalid_per_principal_per_min
        if per_min:
            step = timedelta(microseconds=_WINDOW_US // per_min)
            key = key_digests(organization, principal)[2]
            # Never refused: the request is already answered (400), only its count is lost.
            self._call("count_invalid", _COUNT_INVALID, {"key": key, "step": step}, fail_closed=False)

    def release_process(self, pid: int) -> int:
        """Nothing to drop: a dead worker's leases expire by themselves."""
        return 0

    def slots_held(self, organization: str) -> int:
        """Running queries counted against an organization on every host (for tests and operators)."""
        row = self._call("held", _HELD, (organization_digest(organization),), fail_closed=False)
        return int(row[0]) if row else 0

    def readiness(self) -> str:
        """`ok` when the database answers within the timeout, else `unavailable`."""
        try:
            self._query("ready", "SELECT 1", ())
        except STORE_ERRORS:
            return "unavailable"
        return "ok"

    @property
    def fails_closed(self) -> bool:
        """Whether a request is refused while the store fails (else admitted unlimited)."""
        return self._on_error == "closed"

    def close(self) -> None:
        """Close this process's connections, once a purge under way (bounded by its timeouts) ends."""
        if self._purge_thread is not None:
            self._purge_thread.join()
        self._pool.close()

    def _acquire(self, organization: str, principal: str, rates: bool, hold_slot: bool) -> Release | None:
        hold_slot = hold_slot and self._counts_slots
        applied: list[tuple[Rule, bytes]] = [
            (rule, digest)
            for rule, digest in zip(self._rules, key_digests(organization, principal))
            if rule.applies(rates, hold_slot)
        ]
        if not applied:
            return None
        lease = uuid.uuid4() if hold_slot else None
        if time.monotonic() >= self._purge_at:
            self._start_purge()
        row = self._call("admit", _ADMIT, _admit_arguments(applied, rates, lease, self._lease_secs))
        if row is None:  # the store failed, and the request is admitted unlimited
            return None
        refused, full, retry_after = row
        if refused:
            rule = applied[refused - 1][0]
            raise rule.full() if full else rule.over_rate(retry_after)
        return None if lease is None else partial(self._release, lease)

    def _release(self, lease: uuid.UUID) -> None:
        self._call("release", _RELEASE, (lease,), fail_closed=False)

    def _start_purge(self) -> None:
        """Purge on a thread of its own, unless one is under way in this process."""
        if not self._purge_lock.acquire(blocking=False):
            return  # another serving thread is starting it
        try:
            # A thread from before a fork reads as ended in the child.
            if self._purge_thread is None or not self._purge_thread.is_alive():
                self._purge_at = time.monotonic() + _PURGE_EVERY_SECS
                self._purge_thread = threading.Thread(
                    target=self.purge_idle_keys, name="limits-purge", daemon=True
                )
                self._purge_thread.start()
        finally:
            self._purge_lock.release()

    def purge_idle_keys(self) -> None:
        """Delete a batch of expired leases, then of keys that carry no state, on this thread.

        Over a connection of its own, apart from the pool: a purge that fails is logged, and the
        admissions never see it (the pool's pause after a failure would admit them unlimited, or
        refuse them with `closed`)."""
        timeout_ms = max(1, round(_PURGE_TIMEOUT_SECS * 1000))  # 0 would mean no timeout
        try:
            with psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=_PURGE_CONNECT_TIMEOUT_SECS,
                options=f"-c statement_timeout={timeout_ms}",
                tcp_user_timeout=timeout_ms,
                application_name="reporting-proxy limits purge",
            ) as connection:
                for statement in _PURGE:
                    connection.execute(statement, _PURGE_PARAMS)
        except psycopg.Error as exc:
            log.warning("limits purge failed (%s: %s); the next one retries", type(exc).__name__, exc)

    def _call(
        self, operation: str, sql: str, params: Sequence[Any] | dict[str, Any], *, fail_closed: bool = True
    ) -> tuple[Any, ...] | None:
        """One statement's first row; on a store error None (fail-open) or LimitsUnavailable."""
        try:
            return self._query(operation, sql, params)
        except STORE_ERRORS as exc:
            self._warn(f"limits store unavailable ({type(exc).__name__}: {exc}); failing {self._on_error}")
            if fail_closed and self.fails_closed:
                raise LimitsUnavailable("The rate limits cannot be checked now.") from exc
            return None

    def _query(
        self, operation: str, sql: str, params: Sequence[Any] | dict[str, Any]
    ) -> tuple[Any, ...] | None:
        started = time.perf_counter()
        try:
            with self._pool.connection(self._timeout_secs) as connection:
                cursor = connection.execute(sql, params)
                row = cursor.fetchone() if cursor.description else None
        except StoreDown:
            observe_limits_store(operation, None, failed=True)  # not tried: no latency to note
            raise
        except STORE_ERRORS:
            observe_limits_store(operation, time.perf_counter() - started, failed=True)
            raise
        observe_limits_store(operation, time.perf_counter() - started, failed=False)
        return row

    def _warn(self, message: str) -> None:
        # Once a minute: a store that is down stays so for many requests.
        if time.monotonic() - self._warned_at >= _WARN_EVERY_SECS:
            self._warned_at = time.monotonic()
            log.warning(message)


def _admit_arguments(
    applied: list[tuple[Rule, bytes]], rates: bool, lease: uuid.UUID | None, lease_secs: float
) -> tuple[Any, ...]:
    """The arguments of the admission function, one array element per key."""
    return (
        [digest for _, digest in applied],
        [rule.per_min if rates else 0 for rule, _ in applied],
        [not rule.checked_only for rule, _ in applied],
        [-1 if rule.checked_only else rule.concurrent for rule, _ in applied],
        lease,
        lease_secs,
    )
