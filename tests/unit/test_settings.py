"""Settings: `PROXY_*` variables parsed once, bad values named, the query limits inherited."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from proxy.settings import Settings, SettingsError, load_settings
from schemas.request import QueryLimits, QuerySchema

_LIMITS = [spec.name for spec in fields(QueryLimits)]


@pytest.mark.parametrize(
    ("environ", "name", "expected"),
    [
        (
            {"PROXY_BACKEND": "druid", "PROXY_DRUID_BROKER_URL": "http://b:8082/"},
            "druid_broker_url",
            "http://b:8082",
        ),
        ({"PROXY_DRUID_BROKER_URL": "https://b"}, "backend", "druid"),
        ({}, "backend", "embedded"),
        ({"PROXY_DATA_DIR": "/srv/proxy"}, "data_dir", Path("/srv/proxy")),
        ({"PROXY_REQUEST_TIMEOUT_SECS": "2.5"}, "request_timeout_secs", 2.5),
        ({"PROXY_MAX_GROUP_BY": "7"}, "max_group_by", 7),
        ({"PROXY_MAX_RESULT_ROWS": "10"}, "max_result_rows", 10),
        ({"PROXY_MAX_BUCKETS": "50"}, "max_buckets", 50),
        ({"PROXY_RATE_LIMIT_PER_ORG_PER_MIN": "0"}, "rate_limit_per_org_per_min", 0),
        ({"PROXY_DRUID_LANE": "reports"}, "druid_lane", "reports"),
        ({"PROXY_MAX_GROUP_BY": ""}, "max_group_by", QueryLimits().max_group_by),
        ({"OTHER_MAX_GROUP_BY": "9"}, "max_group_by", QueryLimits().max_group_by),
        ({"PROXY_CACHE_MAX_BYTES": "0"}, "cache_max_bytes", 0),
        ({"PROXY_CACHE_MAX_BYTES": "262144"}, "cache_max_bytes", 262144),
        (
            {"PROXY_CORS_ORIGINS": "https://a.example HTTPS://A.example,https://b.example"},
            "cors_origins",
            ("https://a.example", "https://b.example"),
        ),
    ],
)
def test_variable_is_parsed(environ: dict[str, str], name: str, expected: Any) -> None:
    assert getattr(load_settings(environ), name) == expected


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("PROXY_BACKEND", "postgres"),
        ("PROXY_DRUID_BROKER_URL", "broker:8082"),
        ("PROXY_MAX_GROUP_BY", "0"),
        ("PROXY_MAX_INTERVAL_DAYS", "a year"),
        ("PROXY_REQUEST_TIMEOUT_SECS", "-1"),
        ("PROXY_MAX_CONCURRENT_PER_ORG", "-1"),
        ("PROXY_JWT_ALGORITHM", "none"),
        ("PROXY_CACHE_MAX_BYTES", "262143"),
    ],
)
def test_bad_value_names_its_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}='{raw}': "):
        load_settings({variable: raw})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PROXY_BACKEND": "druid"}, "PROXY_BACKEND=druid needs PROXY_DRUID_BROKER_URL"),
        ({"PROXY_JWT_ALGORITHM": "HS256"}, "PROXY_JWT_ALGORITHM=HS256 needs PROXY_JWT_SECRET"),
        ({"PROXY_JWT_ALGORITHM": "RS256"}, "PROXY_JWT_ALGORITHM=RS256 needs PROXY_JWT_PUBLIC_KEY_FILE"),
    ],
)
def test_inconsistent_settings_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=f"^{message}"):
        load_settings(environ)


def test_overrides_win_over_the_environment() -> None:
    assert load_settings({"PROXY_MAX_GROUP_BY": "7"}, max_group_by=3).max_group_by == 3


@pytest.mark.parametrize("name", _LIMITS)
def test_each_query_limit_is_a_setting_the_schema_enforces(name: str) -> None:
    settings = load_settings({f"PROXY_{name.upper()}": "3"})
    assert getattr(QuerySchema(settings).limits, name) == 3


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().max_group_by = 1  # type: ignore[misc]


def test_data_files_live_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    paths = (settings.access_db_path, settings.limits_path, settings.embedded_dir)
    assert {path.parent for path in paths} == {tmp_path}
