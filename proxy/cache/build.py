"""The result cache a service gets from its settings and engine; None when it has none."""

from __future__ import annotations

from pathlib import Path

from proxy.backends.base import Backend
from proxy.cache.flight import SingleFlight
from proxy.cache.freshness import Freshness
from proxy.cache.results import DataVersions, ResultCache, VersionOnly
from proxy.cache.store import DiskStore, ResultStore
from proxy.settings import Settings


def build_cache(settings: Settings, backend: Backend) -> ResultCache | None:
    """The cache (its answers under the data dir or in the shared PostgreSQL), or None when it is off
    or the engine has no data version."""
    versions = data_versions(settings, backend)
    if settings.cache_max_bytes == 0 or versions is None:
        return None
    root = settings.data_dir / "cache"
    return ResultCache(
        _store(settings, root),
        SingleFlight(root / "flights"),
        versions,
        Freshness(settings.cache_recent_secs),
    )


def _store(settings: Settings, root: Path) -> ResultStore:
    """The answers' store: shared by every host through PostgreSQL, or this host's files."""
    if settings.cache_database_url:
        from proxy.cache.shared_store import PostgresStore

        return PostgresStore(settings.cache_database_url, settings.cache_max_bytes)
    return DiskStore(root / "results", settings.cache_max_bytes)


def data_versions(settings: Settings, backend: Backend) -> DataVersions | None:
    """How the engine tells its data changed; None for an engine that cannot (a test's stand-in)."""
    from proxy.backends.druid.backend import DruidBackend
    from proxy.backends.embedded.backend import EmbeddedBackend

    if isinstance(backend, DruidBackend):
        from proxy.backends.druid.versions import DruidVersions

        return DruidVersions(backend.client, backend.datasource)
    if isinstance(backend, EmbeddedBackend):
        from proxy.backends.embedded.versions import EmbeddedVersions

        return VersionOnly(EmbeddedVersions(settings.embedded_dir))
    return None
