"""What a limiter answers one request, the same check for every store of the limits."""

from __future__ import annotations

from proxy.errors import TooManyRequests
from proxy.runtime.limits import Limiter
from tests.support.ids import ORG


def admit_outcome(limiter: Limiter, org: str = ORG, principal: str = "key:a") -> int:
    """0 when admitted (holding no slot afterwards), else the Retry-After of the refusal."""
    try:
        with limiter.admit(org, principal):
            return 0
    except TooManyRequests as exc:
        assert exc.retry_after is not None
        return exc.retry_after
