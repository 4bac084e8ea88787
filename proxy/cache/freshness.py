"""How long an answer stays current beyond its data version: intervals touching the present.

Data for a bucket that has not ended may still arrive without any change the data version
sees (streaming ingestion appends to open segments), so such answers carry a time window in
their version: a new window every `recent_secs`, a new key, a fresh query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from proxy.query.plan import ResultPlan


@dataclass(frozen=True)
class Freshness:
    """The policy: past intervals live until their data changes, recent ones `recent_secs` at most."""

    recent_secs: float

    def touches_present(self, plan: ResultPlan, now: float) -> bool:
        """Whether any interval the plan reads (its comparison's too) ends after `now` (epoch seconds)."""
        return plan.latest_end.timestamp() > now

    def window(self, plan: ResultPlan, now: float) -> str | None:
        """The time part of the version: empty for the past, the window for recent data, None
        when recent answers are not cached at all."""
        if not self.touches_present(plan, now):
            return ""
        if self.recent_secs <= 0:
            return None
        return f"recent/{math.floor(now / self.recent_secs)}"

    def lifetime_secs(self, plan: ResultPlan, now: float) -> float | None:
        """How long the store keeps the answer: None (until evicted) for the past."""
        return self.recent_secs if self.touches_present(plan, now) else None
