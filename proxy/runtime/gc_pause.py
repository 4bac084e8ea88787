"""Pause the cyclic garbage collector while a large result is turned into rows.

Building a large result allocates several containers per row. Every few hundred container
allocations start a collection, and the older generations (the decoded answer, the rows built
so far) are walked again and again, which can cost as much as building the rows. Result rows
hold no reference cycles, so reference counting frees them either way. The service pauses once
per request, around the whole answer (`proxy/service/reporting.py`), so the collector next runs
after those rows are freed. `gc.disable()` is process-wide: the caller that found the collector
on turns it back on, whatever other threads did meanwhile.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Below this many rows the collector costs little and the global switch is not worth touching.
LARGE_RESULT_ROWS = 5_000


@contextmanager
def gc_paused(rows: int) -> Iterator[None]:
    """No cyclic collection inside the block when `rows` is large and the collector is on."""
    if rows < LARGE_RESULT_ROWS or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
