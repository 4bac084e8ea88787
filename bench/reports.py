"""The typical reports the suite measures, as public request bodies, and the large one."""

from __future__ import annotations

from typing import Any

from proxyctl.ingest.generator import DEMO_ORGANIZATION

# The demo organization holds about half of every generated data set.
ORGANIZATION = DEMO_ORGANIZATION
JUNE = {
    "start": "2019-06-01T00:00:00+03:00",
    "end": "2019-07-01T00:00:00+03:00",
    "time_zone": "Europe/Helsinki",
}
YEAR = {
    "start": "2019-01-01T00:00:00+02:00",
    "end": "2019-12-01T00:00:00+02:00",
    "time_zone": "Europe/Helsinki",
}
UNIQUE_VISITORS = {"type": "hyperUnique", "fields": ["visitor_id"]}

REPORTS: dict[str, dict[str, Any]] = {
    "day_series_30d": {
        "interval": JUNE,
        "granularity": "day",
        "aggregations": [
            {"type": "count"},
            {"type": "avg", "fields": ["session_duration_secs"]},
            UNIQUE_VISITORS,
        ],
    },
    "by_country": {
        "interval": JUNE,
        "granularity": "all",
        "group_by": ["country"],
        "aggregations": [{"type": "count"}, UNIQUE_VISITORS],
        "order_by": [{"field": "count", "direction": "desc"}],
    },
    "top_20_urls": {
        "interval": JUNE,
        "granularity": "all",
        "group_by": ["distinct_visited_urls"],
        "aggregations": [{"type": "count"}],
        "order_by": [{"field": "count", "direction": "desc"}],
        "limit": 20,
    },
    "unique_visitors_nested": {
        "interval": JUNE,
        "granularity": "week",
        "aggregations": [UNIQUE_VISITORS],
        "filters": [
            {"type": "in", "dimension": "country", "values": ["FI", "SE", "DE", "US"]},
            {"type": "not", "field": {"type": "selector", "dimension": "device_type", "value": "tablet"}},
            {
                "type": "or",
                "fields": [
                    {
                        "type": "search",
                        "dimension": "distinct_visited_urls",
                        "query": {"type": "insensitive_contains", "value": "/blog/"},
                    },
                    {"type": "not", "field": {"type": "selector", "dimension": "rooms", "value": None}},
                ],
            },
        ],
    },
}

# 100,000 rows: every (url, day) pair of the year, capped by the largest allowed limit.
LARGE: dict[str, Any] = {
    "interval": YEAR,
    "granularity": "day",
    "group_by": ["distinct_visited_urls"],
    "aggregations": [{"type": "count"}],
    "limit": 100_000,
}
