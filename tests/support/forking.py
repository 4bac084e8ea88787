"""Run a check in a forked child, as gunicorn runs its workers."""

from __future__ import annotations

import os
from collections.abc import Callable


def passes_in_forked_child(check: Callable[[], bool]) -> bool:
    """Whether `check()` returns True in a child forked from this process."""
    pid = os.fork()
    if pid == 0:
        passed = False
        try:
            passed = check()
        finally:
            os._exit(0 if passed else 1)  # never back into pytest in the child
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0
