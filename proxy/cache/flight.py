"""Single-flight: identical requests wait for the first one's backend query, across threads and workers.

A lock per key would leave one file per query ever asked; keys are spread over a fixed set of
lock files instead, so two different queries share a lock only rarely (and then one waits).
`flock` locks belong to an open file, so two threads of one process exclude each other too.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from proxy.errors import BackendTimeout

STRIPES = 1024
# Waiting polls the lock: from a millisecond up to this, so a long query costs few wake-ups.
_LONGEST_NAP_SECS = 0.02


class Held:
    """A key's lock until `release()`, which any thread may call (the store's writer does)."""

    def __init__(self, descriptor: int, waited: bool) -> None:
        self.descriptor = descriptor
        self.waited = waited  # another holder had it first: it may have stored the answer

    def release(self) -> None:
        try:
            fcntl.flock(self.descriptor, fcntl.LOCK_UN)
        finally:
            os.close(self.descriptor)


class SingleFlight:
    """Locks by key under one directory of the data dir."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory

    def lock_path(self, key: str) -> Path:
        """The lock file of a key (a hex digest)."""
        return self.directory / f"{int(key[:8], 16) % STRIPES}.lock"

    def acquire(self, key: str, deadline: float) -> Held:
        """The key's lock; waits for an earlier holder until `deadline` (perf_counter clock)."""
        descriptor = os.open(self.lock_path(key), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            waited = _acquire(descriptor, deadline)
        except BaseException:
            os.close(descriptor)
            raise
        return Held(descriptor, waited)


def _acquire(descriptor: int, deadline: float) -> bool:
    nap = 0.001
    waited = False
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return waited
        except BlockingIOError:
            if time.perf_counter() + nap >= deadline:
                raise BackendTimeout(
                    "An identical query was still running at the request's deadline."
                ) from None
            waited = True
            time.sleep(nap)
            nap = min(nap * 2, _LONGEST_NAP_SECS)
