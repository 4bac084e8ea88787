"""The limiter the settings ask for. Apart from `limits` because both stores import it."""

from __future__ import annotations

from proxy.runtime.limits import Limiter, Limits
from proxy.runtime.shared_limits import SharedLimiter
from proxy.runtime.table_limits import TableLimiter
from proxy.settings import Settings


def build_limiter(settings: Settings) -> Limiter:
    """Shared through PostgreSQL when a limits database is set (and a limit is on), else this host's table."""
    limits = Limits.from_settings(settings)
    if settings.limits_database_url and not limits.off:
        return SharedLimiter(
            settings.limits_database_url,
            limits,
            settings.limits_on_store_error,
            settings.limits_store_timeout_secs,
        )
    return TableLimiter(settings.limits_path, limits)
