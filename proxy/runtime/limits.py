"""Rate and concurrency limits per organization and per (organization, principal): one interface
(`Limiter`) over two stores of the counters, chosen by `proxy.runtime.limiters.build_limiter`
from the settings.

- `proxy.runtime.table_limits.TableLimiter`, the default: shared by every worker process on the
  host (a memory-mapped file), not across hosts.
- `proxy.runtime.shared_limits.SharedLimiter` (`PROXY_LIMITS_DATABASE_URL`): PostgreSQL, shared
  by every host that names the same database.

Both read one rule table (`rules`), so the limits, their refusals and Retry-After are the same.

- Rates use GCRA, a token bucket held as one "theoretical arrival time" per key: a key at
  `per_min` admits a burst of `per_min` and then one request every `60 / per_min` seconds.
- Invalid requests have a rate of their own per principal, charged when a request fails
  validation (`count_invalid`) and checked before the next one's body is read (`charge`): a
  credential that sends many invalid bodies is refused without its bodies costing CPU.
- Concurrency: a running query counts once on its organization's key and once on its
  principal's; every exit path of `admit` takes it back.

A limiter whose store fails admits the request and logs (the shared one may refuse instead, by
a setting): limits protect the backend, they are not worth an outage of their own.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from proxy.errors import TooManyRequests
from proxy.runtime.limit_table import DIGEST_SIZE, process_alive, process_identity
from proxy.settings import Settings

__all__ = [
    "Limiter",
    "Limits",
    "Rule",
    "invalid_digest",
    "key_digests",
    "organization_digest",
    "principal_digest",
    "process_alive",
    "process_identity",
    "rules",
]


@dataclass(frozen=True)
class Limits:
    """The four admission limits; 0 turns one off. Their defaults live in `Settings` alone."""

    per_org_per_min: int
    per_principal_per_min: int
    concurrent_per_org: int
    concurrent_per_principal: int
    # A process that took no slot for this long yet holds some has leaked them: no query lives
    # that long.
    stale_slot_secs: float = 300.0
    invalid_per_principal_per_min: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits the `PROXY_*` settings ask for."""
        return cls(
            per_org_per_min=settings.rate_limit_per_org_per_min,
            per_principal_per_min=settings.rate_limit_per_principal_per_min,
            concurrent_per_org=settings.max_concurrent_per_org,
            concurrent_per_principal=settings.max_concurrent_per_principal,
            stale_slot_secs=2 * settings.request_timeout_secs + 60,
            invalid_per_principal_per_min=settings.rate_limit_invalid_per_principal_per_min,
        )

    @property
    def off(self) -> bool:
        """Whether every limit is off, so the file need not be touched at all."""
        return not (
            self.per_org_per_min
            or self.per_principal_per_min
            or self.concurrent_per_org
            or self.concurrent_per_principal
            or self.invalid_per_principal_per_min
        )


def organization_digest(organization: str) -> bytes:
    """The digest of an organization's key."""
    return hashlib.blake2b(f"org\0{organization}".encode(), digest_size=DIGEST_SIZE).digest()


def principal_digest(organization: str, principal: str) -> bytes:
    """The digest of a principal's key within an organization."""
    return hashlib.blake2b(
        f"principal\0{organization}\0{principal}".encode(), digest_size=DIGEST_SIZE
    ).digest()


def invalid_digest(organization: str, principal: str) -> bytes:
    """The digest of a principal's invalid-request budget within an organization."""
    return hashlib.blake2b(f"invalid\0{organization}\0{principal}".encode(), digest_size=DIGEST_SIZE).digest()


@functools.lru_cache(maxsize=4096)
def key_digests(organization: str, principal: str) -> tuple[bytes, bytes, bytes]:
    """The digests of the keys of `rules`, in their order."""
    return (
        organization_digest(organization),
        principal_digest(organization, principal),
        invalid_digest(organization, principal),
    )


@dataclass(frozen=True)
class Rule:
    """The limits on one key (0: off), and whose key it is, for the refusal message."""

    per_min: int
    concurrent: int
    whose: str
    what: str = "queries"
    # A budget only checked on admission (charged by `count_invalid`), never holding a slot.
    checked_only: bool = False

    def applies(self, rates: bool, hold_slot: bool) -> bool:
        """Whether a request charging `rates` and holding a slot (or not) counts on this key."""
        if self.checked_only:
            return rates and bool(self.per_min)
        return (rates and bool(self.per_min)) or hold_slot

    def over_rate(self, wait_secs: int) -> TooManyRequests:
        """The refusal of a request over this key's rate."""
        return TooManyRequests(
            f"More than {self.per_min} {self.what} a minute for this {self.whose}.", wait_secs
        )

    def full(self) -> TooManyRequests:
        """The refusal of a request finding every slot of this key taken."""
        return TooManyRequests(f"{self.concurrent} queries of this {self.whose} are already running.", 1)


def rules(limits: Limits) -> tuple[Rule, Rule, Rule]:
    """The keys a request counts on, in the order of `key_digests`: organization, credential,
    and the credential's invalid requests."""
    return (
        Rule(limits.per_org_per_min, limits.concurrent_per_org, "organization"),
        Rule(limits.per_principal_per_min, limits.concurrent_per_principal, "credential"),
        Rule(limits.invalid_per_principal_per_min, 0, "credential", "invalid queries", checked_only=True),
    )


Release = Callable[[], None]


class Limiter(Protocol):
    """Admits a query or raises TooManyRequests; where the counters live is the store's affair."""

    limits: Limits

    def admit(
        self, organization: str, principal: str, hold_slot: bool = True, *, rates: bool = True
    ) -> AbstractContextManager[None]:
        """Count one request against the rates and, with `hold_slot`, hold a concurrency slot."""
        ...

    def charge(self, organization: str, principal: str) -> None:
        """Count one request against the rates, holding nothing."""
        ...

    def hold(self, organization: str, principal: str) -> AbstractContextManager[None]:
        """Hold a concurrency slot, the rates already charged."""
        ...

    def count_invalid(self, organization: str, principal: str) -> None:
        """Charge one invalid request to the principal's budget of them."""
        ...

    def release_process(self, pid: int) -> int:
        """Drop every slot a (dead) process of this host holds; the number dropped."""
        ...

    def slots_held(self, organization: str) -> int:
        """Running queries counted against an organization."""
        ...

    def readiness(self) -> str:
        """The store's state for `/readyz`: `local`, `ok`, or `unavailable`."""
        ...


class Admission:
    """`admit`, `charge` and `hold` of every store, from its `_acquire` and the release it returns."""

    limits: Limits

    @contextmanager
    def admit(
        self, organization: str, principal: str, hold_slot: bool = True, *, rates: bool = True
    ) -> Iterator[None]:
        """Count one request against the rates (unless not `rates`) and, with `hold_slot`, hold
        a concurrency slot."""
        release = self._acquire(organization, principal, rates, hold_slot)
        try:
            yield
        finally:
            if release is not None:
                release()

    def charge(self, organization: str, principal: str) -> None:
        """Count one request against the rates, holding nothing (TooManyRequests if over one)."""
        self._acquire(organization, principal, rates=True, hold_slot=False)

    def hold(self, organization: str, principal: str) -> AbstractContextManager[None]:
        """Hold a concurrency slot, the rates already charged (TooManyRequests if none is free)."""
        return self.admit(organization, principal, rates=False)

    def _acquire(self, organization: str, principal: str, rates: bool, hold_slot: bool) -> Release | None:
        raise NotImplementedError
