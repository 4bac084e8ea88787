"""Service configuration, read once from `PROXY_*` environment variables into a frozen object."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from schemas.request import QueryLimits

Backend = Literal["druid", "embedded"]
LimitsOnError = Literal["open", "closed"]

# A concurrency limit left unset: derived from the serving slots when the settings are built.
DERIVED = -1
# `reporting-proxy serve`'s default of 3 workers x 2 threads, assumed while the real count is unknown.
DEFAULT_SERVING_SLOTS = 6


class SettingsError(ValueError):
    """A `PROXY_*` variable holds a value the service cannot start with."""


@dataclass(frozen=True)
class Settings(QueryLimits):
    """Everything the service can be configured with; defaults suit a local demo.

    The query limits are inherited from `QueryLimits` (`PROXY_MAX_GROUP_BY`, ...), so the
    settings themselves are what `QuerySchema` is built with.
    """

    backend: Backend = "embedded"
    data_dir: Path = Path("./var")
    druid_broker_url: str | None = None
    druid_overlord_url: str | None = None
    druid_datasource: str = "visitor_sessions"
    # Druid query lane (`context.lane`); the broker's laning strategy caps its concurrency.
    druid_lane: str | None = None
    # The embedded engine, per worker process (one DuckDB instance each, shared by its threads):
    # its memory, its threads, and the disk a query may spill to past the memory (0: no spill).
    embedded_memory_limit_mb: int = 256
    embedded_threads: int = 1
    embedded_spill_limit_mb: int = 2048
    request_timeout_secs: float = 30.0
    connect_timeout_secs: float = 2.0
    max_buckets: int = 10_000
    max_body_bytes: int = 64 * 1024
    # Read deadlines of `reporting-proxy serve`'s front server: the whole header, and each
    # pause in the body; past them the connection is closed (docs/serving.md).
    client_header_timeout_secs: int = 10
    client_body_timeout_secs: int = 10
    # Requests the host serves at once (gunicorn workers x threads); 0 while unknown. The
    # gunicorn config sets it from the real worker count, and the concurrency limits are
    # derived from it (or checked against it) so no one caller can hold every slot.
    serving_slots: int = 0
    # Admission limits per organization and per (organization, principal); 0 turns one off.
    rate_limit_per_org_per_min: int = 600
    rate_limit_per_principal_per_min: int = 300
    # Invalid requests (400) a minute per credential: past it, its requests are 429 before
    # their bodies are read, as validating a hostile body costs CPU every other tenant needs.
    rate_limit_invalid_per_principal_per_min: int = 60
    max_concurrent_per_org: int = DERIVED
    max_concurrent_per_principal: int = DERIVED
    jwt_algorithm: str | None = None
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key_file: Path | None = None
    jwt_jwks_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_orgs_claim: str = "orgs"
    # Result cache (docs/cache.md): its bound in bytes, 0 turns it off; and how long an answer
    # whose interval reaches the present may be served, 0: never from the cache.
    cache_max_bytes: int = 0
    cache_recent_secs: float = 10.0
    # The cache's answers in a PostgreSQL every host shares (docs/several-hosts.md); none: on disk.
    cache_database_url: str | None = field(default=None, repr=False)
    # Browser frontends (docs/console.md): the exact origins (`https://app.example.com`) whose
    # pages may call the API, none by default; and the query console at /console, on or off.
    cors_origins: tuple[str, ...] = ()
    console: bool = True
    # Limits shared by every host (docs/several-hosts.md): a PostgreSQL URL, none keeps them in
    # this host's table; what a request gets while that database fails or is slow (open: admitted
    # unlimited, closed: 503 limits_unavailable); and the bound on each call to it.
    limits_database_url: str | None = field(default=None, repr=False)
    limits_on_store_error: LimitsOnError = "open"
    limits_store_timeout_secs: float = 0.3
    # The access store shared by every host (docs/several-hosts.md): a PostgreSQL URL, none keeps
    # organizations and keys in this host's SQLite file; and the bound on each call to it.
    access_database_url: str | None = field(default=None, repr=False)
    access_store_timeout_secs: float = 1.0

    def __post_init__(self) -> None:
        half = max(1, self.capacity // 2)
        per_org = _derived(self.max_concurrent_per_org, half)
        per_principal = _derived(self.max_concurrent_per_principal, per_org or half)
        object.__setattr__(self, "max_concurrent_per_org", per_org)
        object.__setattr__(self, "max_concurrent_per_principal", per_principal)
        _check_capacity(self)

    @property
    def capacity(self) -> int:
        """The serving slots, or serve's default while they are unknown."""
        return self.serving_slots or DEFAULT_SERVING_SLOTS

    @property
    def access_db_path(self) -> Path:
        """SQLite file holding organizations and API-key hashes."""
        return self.data_dir / "access.sqlite3"

    @property
    def limits_path(self) -> Path:
        """Memory-mapped file holding the rate and concurrency counters shared by every worker."""
        return self.data_dir / "limits.shm"

    @property
    def embedded_dir(self) -> Path:
        """Directory of the embedded engine's database generations."""
        return self.data_dir / "embedded"


def _derived(value: int, default: int) -> int:
    return default if value == DERIVED else value


def _check_capacity(settings: Settings) -> None:
    """Neither an organization nor one of its credentials may hold every serving slot."""
    if not settings.serving_slots:
        return  # tooling and the gunicorn master before it knows its workers: nothing to check
    most = max(1, settings.serving_slots - 1)
    for name in ("max_concurrent_per_org", "max_concurrent_per_principal"):
        value = getattr(settings, name)
        if value > most:
            raise SettingsError(
                f"PROXY_{name.upper()}={value}: must leave others a slot of the "
                f"{settings.serving_slots} the host serves at once (at most {most}, or 0 for off)"
            )
    per_org, per_principal = settings.max_concurrent_per_org, settings.max_concurrent_per_principal
    if per_org and per_principal > per_org:
        raise SettingsError(
            f"PROXY_MAX_CONCURRENT_PER_PRINCIPAL={per_principal}: above the organization's "
            f"PROXY_MAX_CONCURRENT_PER_ORG={per_org}"
        )


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be 0 (off) or a positive integer")
    return value


# Below this the result cache's own files (its log and the log's index) would take the bound
# and leave no room for answers (proxy/cache/store.py).
CACHE_LEAST_BYTES = 256 * 1024


def _cache_bound(raw: str) -> int:
    value = int(raw)
    if value != 0 and value < CACHE_LEAST_BYTES:
        raise ValueError(f"must be 0 (off) or at least {CACHE_LEAST_BYTES} bytes")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError("must be 0 or a positive number")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _backend(raw: str) -> Backend:
    if raw not in ("druid", "embedded"):
        raise ValueError("must be 'druid' or 'embedded'")
    return raw  # type: ignore[return-value]


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return raw.rstrip("/")


def _origins(raw: str) -> tuple[str, ...]:
    # Browsers send scheme and host in lower case; each origin once (nginx refuses a repeated key).
    origins = tuple(dict.fromkeys(raw.lower().replace(",", " ").split()))
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise ValueError(f"{origin!r} is not an exact origin: scheme://host[:port], no path, no '*'")
    return origins


def _postgres_url(raw: str) -> str:
    if not raw.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be a postgresql:// URL")
    return raw


def _on_store_error(raw: str) -> LimitsOnError:
    if raw not in ("open", "closed"):
        raise ValueError("must be 'open' or 'closed'")
    return raw  # type: ignore[return-value]


def _switch(raw: str) -> bool:
    if raw.lower() not in _SWITCH:
        raise ValueError("must be on or off")
    return _SWITCH[raw.lower()]


def _jwt_algorithm(raw: str) -> str:
    if raw not in ("HS256", "RS256", "ES256"):
        raise ValueError("must be HS256, RS256 or ES256")
    return raw


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
_SWITCH = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}

_PARSERS: dict[str, Callable[[str], Any]] = {
    "backend": _backend,
    "data_dir": Path,
    "druid_broker_url": _url,
    "druid_overlord_url": _url,
    "request_timeout_secs": _positive_float,
    "connect_timeout_secs": _positive_float,
    "cache_max_bytes": _cache_bound,
    "cache_recent_secs": _non_negative_float,
    "jwt_algorithm": _jwt_algorithm,
    "jwt_public_key_file": Path,
    "jwt_jwks_file": Path,
    "rate_limit_per_org_per_min": _non_negative_int,
    "rate_limit_per_principal_per_min": _non_negative_int,
    "rate_limit_invalid_per_principal_per_min": _non_negative_int,
    "serving_slots": _non_negative_int,
    "max_concurrent_per_org": _non_negative_int,
    "max_concurrent_per_principal": _non_negative_int,
    "embedded_spill_limit_mb": _non_negative_int,
    "cors_origins": _origins,
    "limits_database_url": _postgres_url,
    "cache_database_url": _postgres_url,
    "limits_on_store_error": _on_store_error,
    "limits_store_timeout_secs": _positive_float,
    "access_database_url": _postgres_url,
    "access_store_timeout_secs": _positive_float,
    "console": _switch,
}


def _parse(name: str, raw: str, default: Any) -> Any:
    parser = _PARSERS.get(name) or (_positive_int if isinstance(default, int) else str)
    try:
        return parser(raw)
    except ValueError as exc:
        raise SettingsError(f"PROXY_{name.upper()}={raw!r}: {exc}") from exc


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from `PROXY_*` variables; a bad value raises naming the variable."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for spec in fields(Settings):
        raw = env.get(f"PROXY_{spec.name.upper()}")
        if raw is not None and raw != "":
            values[spec.name] = _parse(spec.name, raw, spec.default)
    if "backend" not in values and values.get("druid_broker_url"):
        values["backend"] = "druid"
    values.update(overrides)
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(settings: Settings) -> None:
    if settings.backend == "druid" and not settings.druid_broker_url:
        raise SettingsError("PROXY_BACKEND=druid needs PROXY_DRUID_BROKER_URL")
    if settings.jwt_algorithm == "HS256" and not settings.jwt_secret:
        raise SettingsError("PROXY_JWT_ALGORITHM=HS256 needs PROXY_JWT_SECRET")
    needs_key = settings.jwt_algorithm in ("RS256", "ES256")
    if needs_key and not (settings.jwt_public_key_file or settings.jwt_jwks_file):
        raise SettingsError(
            f"PROXY_JWT_ALGORITHM={settings.jwt_algorithm} needs PROXY_JWT_PUBLIC_KEY_FILE "
            "or PROXY_JWT_JWKS_FILE"
        )
