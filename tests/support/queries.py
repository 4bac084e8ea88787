"""The broad query set every backend must answer exactly like the oracle: one entry per case."""

from __future__ import annotations

from typing import Any

HELSINKI_YEAR = {
    "start": "2019-01-01T00:00:00+02:00",
    "end": "2019-12-01T00:00:00+02:00",
    "time_zone": "Europe/Helsinki",
}
SPRING = {
    "start": "2019-03-25T00:00:00+02:00",
    "end": "2019-04-08T00:00:00+03:00",
    "time_zone": "Europe/Helsinki",
}
AUTUMN_DAY = {
    "start": "2019-10-27T00:00:00+03:00",
    "end": "2019-10-28T00:00:00+02:00",
    "time_zone": "Europe/Helsinki",
}
JUNE_UTC = {"start": "2019-06-01T00:00:00Z", "end": "2019-07-01T00:00:00Z"}
COUNT = [{"type": "count"}]
# The costliest shape a caller can send: every array dimension grouped, a year by day.
FIVE_ARRAYS_YEAR_DAILY: dict[str, Any] = {
    "interval": {"start": "2019-01-01T00:00:00Z", "end": "2019-12-01T00:00:00Z"},
    "granularity": "day",
    "group_by": [
        "distinct_visited_urls",
        "distinct_landing_urls",
        "distinct_referrer_urls",
        "distinct_search_terms",
        "rooms",
    ],
    "aggregations": [{"type": "count"}],
    "order_by": [{"field": "count", "direction": "desc"}],
    "limit": 1000,
}
ALL_METRICS = [
    {"type": "count"},
    {"type": "avg", "fields": ["session_duration_secs", "distinct_visited_urls_count"]},
    {"type": "hyperUnique", "fields": ["visitor_id", "session_id"]},
]


def _q(interval: dict[str, str], granularity: str, **extra: Any) -> dict[str, Any]:
    return {
        "interval": interval,
        "granularity": granularity,
        "aggregations": extra.pop("aggregations", ALL_METRICS),
        **extra,
    }


def _leaf(kind: str, dimension: str, **spec: Any) -> dict[str, Any]:
    return {"type": kind, "dimension": dimension, **spec}


QUERIES: dict[str, dict[str, Any]] = {
    "seed_example": _q(
        {
            "start": "2019-01-01T00:00:00+02:00",
            "end": "2019-01-02T00:00:00+02:00",
            "time_zone": "Europe/Helsinki",
        },
        "day",
        aggregations=[{"type": "hyperUnique", "fields": ["visitor_id"]}],
        filters=[_leaf("selector", "city", value="Helsinki"), _leaf("selector", "country", value="FI")],
    ),
    "all_year": _q(HELSINKI_YEAR, "all"),
    "minute_edge_hour": _q(
        {"start": "2019-03-31T00:30:00Z", "end": "2019-03-31T01:30:00Z", "time_zone": "Europe/Helsinki"},
        "minute",
        aggregations=COUNT,
    ),
    "fifteen_minute_kathmandu": _q(
        {
            "start": "2019-06-01T00:00:00+05:45",
            "end": "2019-06-02T00:00:00+05:45",
            "time_zone": "Asia/Kathmandu",
        },
        "fifteen_minute",
    ),
    "thirty_minute_autumn_day": _q(AUTUMN_DAY, "thirty_minute", aggregations=COUNT),
    "hour_autumn_day": _q(AUTUMN_DAY, "hour"),
    "day_spring_dst": _q(SPRING, "day"),
    "week_helsinki": _q(HELSINKI_YEAR, "week"),
    "month_helsinki": _q(HELSINKI_YEAR, "month"),
    "quarter_helsinki": _q(HELSINKI_YEAR, "quarter"),
    "year_new_york": _q(
        {
            "start": "2019-01-01T00:00:00-05:00",
            "end": "2019-12-01T00:00:00-05:00",
            "time_zone": "America/New_York",
        },
        "year",
    ),
    "day_zero_filled_edges": _q({"start": "2018-12-25T00:00:00Z", "end": "2019-01-05T00:00:00Z"}, "day"),
    "mid_bucket_start": _q(
        {
            "start": "2019-06-03T10:17:00+03:00",
            "end": "2019-06-05T07:00:00+03:00",
            "time_zone": "Europe/Helsinki",
        },
        "day",
    ),
    "group_country_device_by_day": _q(JUNE_UTC, "week", group_by=["country", "device_type"]),
    "group_city_nulls": _q(JUNE_UTC, "all", group_by=["city"]),
    "group_numeric": _q(JUNE_UTC, "month", group_by=["distinct_visited_urls_count"], aggregations=COUNT),
    "group_array_rooms": _q(JUNE_UTC, "all", group_by=["rooms"]),
    "group_two_arrays": _q(
        JUNE_UTC, "month", group_by=["rooms", "distinct_referrer_urls"], aggregations=COUNT
    ),
    "top_20_urls": _q(
        HELSINKI_YEAR,
        "all",
        group_by=["distinct_visited_urls"],
        aggregations=COUNT,
        order_by=[{"field": "count", "direction": "desc"}],
        limit=20,
    ),
    "top_5_browsers_per_avg": _q(
        JUNE_UTC,
        "all",
        group_by=["browser_name", "os_name"],
        aggregations=[{"type": "avg", "fields": ["session_duration_secs"]}, {"type": "count"}],
        order_by=[{"field": "session_duration_secs_avg", "direction": "desc"}],
        limit=5,
    ),
    "top_cities_by_day": _q(
        SPRING,
        "day",
        group_by=["city"],
        aggregations=COUNT,
        order_by=[{"field": "count", "direction": "desc"}, {"field": "city", "direction": "asc"}],
        limit=15,
    ),
    "first_groups_by_limit": _q(JUNE_UTC, "day", group_by=["country"], aggregations=COUNT, limit=10),
    "filter_selector": _q(JUNE_UTC, "week", filters=_leaf("selector", "device_type", value="mobile")),
    "filter_not_selector_with_nulls": _q(
        JUNE_UTC,
        "all",
        group_by=["city"],
        aggregations=COUNT,
        filters={"type": "not", "field": _leaf("selector", "city", value="Helsinki")},
    ),
    "filter_selector_null": _q(JUNE_UTC, "all", filters=_leaf("selector", "ip_organization", value=None)),
    "filter_not_selector_null": _q(
        JUNE_UTC, "all", filters={"type": "not", "field": _leaf("selector", "city", value=None)}
    ),
    "filter_empty_array_is_null": _q(JUNE_UTC, "all", filters=_leaf("selector", "rooms", value=None)),
    "filter_in_with_null": _q(
        JUNE_UTC,
        "all",
        group_by=["city"],
        aggregations=COUNT,
        filters=_leaf("in", "city", values=["Helsinki", "Zürich", None]),
    ),
    "filter_not_in": _q(
        JUNE_UTC,
        "all",
        group_by=["browser_name"],
        aggregations=COUNT,
        filters={"type": "not", "field": _leaf("in", "browser_name", values=["Chrome", "Firefox"])},
    ),
    "filter_in_numeric": _q(
        JUNE_UTC, "all", filters=_leaf("in", "distinct_visited_urls_count", values=[0, 1, 2])
    ),
    "filter_bound_numeric": _q(
        JUNE_UTC,
        "week",
        filters=_leaf("bound", "session_duration_secs", lower=30, upper=300, upperStrict=True),
    ),
    "filter_not_bound_upper_only": _q(
        JUNE_UTC, "all", filters={"type": "not", "field": _leaf("bound", "city", upper="M")}
    ),
    "filter_bound_lexicographic_numeric": _q(
        JUNE_UTC,
        "all",
        aggregations=COUNT,
        filters=_leaf("bound", "session_duration_secs", lower="5", upper="7", ordering="lexicographic"),
    ),
    "filter_regex_array": _q(
        JUNE_UTC,
        "all",
        group_by=["device_type"],
        filters=_leaf("regex", "distinct_visited_urls", pattern="/(blog|docs)/"),
    ),
    "filter_not_regex_array": _q(
        JUNE_UTC,
        "all",
        aggregations=COUNT,
        filters={"type": "not", "field": _leaf("regex", "distinct_visited_urls", pattern="/(blog|docs)/")},
    ),
    "filter_like": _q(
        JUNE_UTC,
        "all",
        group_by=["os_name"],
        aggregations=COUNT,
        filters=_leaf("like", "os_name", pattern="Mac%"),
    ),
    "filter_like_underscore": _q(
        JUNE_UTC, "all", aggregations=COUNT, filters=_leaf("like", "country", pattern="F_")
    ),
    "filter_search_contains_array": _q(
        JUNE_UTC,
        "all",
        aggregations=COUNT,
        filters=_leaf("search", "distinct_search_terms", query={"type": "contains", "value": "sh"}),
    ),
    "filter_search_insensitive_unicode": _q(
        JUNE_UTC,
        "all",
        group_by=["city"],
        aggregations=COUNT,
        filters=_leaf("search", "city", query={"type": "insensitive_contains", "value": "ZÜR"}),
    ),
    "filter_nested_or_not_and": _q(
        JUNE_UTC,
        "day",
        aggregations=COUNT,
        filters={
            "type": "or",
            "fields": [
                {
                    "type": "not",
                    "field": {
                        "type": "and",
                        "fields": [
                            _leaf("selector", "device_type", value="desktop"),
                            _leaf("selector", "ip_organization", value=None),
                        ],
                    },
                },
                _leaf("in", "rooms", values=["support", None]),
            ],
        },
    ),
    "filter_array_group_not_element": _q(
        JUNE_UTC,
        "all",
        group_by=["rooms"],
        aggregations=COUNT,
        filters={"type": "not", "field": _leaf("selector", "rooms", value="support")},
    ),
    "unique_visitors_nested_filters": _q(
        HELSINKI_YEAR,
        "month",
        aggregations=[{"type": "hyperUnique", "fields": ["visitor_id"]}],
        filters=[
            _leaf("in", "country", values=["FI", "SE", "DE"]),
            {"type": "not", "field": _leaf("selector", "device_type", value="tablet")},
        ],
    ),
}


def _week(start: str, end: str, zone: str) -> dict[str, str]:
    return {"start": start, "end": end, "time_zone": zone}


# Queries with the issue 15 keys (totals, compare, offset), each answered like the oracle.
ADDITION_QUERIES: dict[str, dict[str, Any]] = {
    "helsinki_week_after_spring_change_previous_period": _q(
        _week("2019-04-01T00:00:00+03:00", "2019-04-08T00:00:00+03:00", "Europe/Helsinki"),
        "day",
        compare="previous_period",
        totals=True,
    ),
    "helsinki_spring_change_week_hourly_previous_period": _q(
        SPRING | {"end": "2019-04-01T00:00:00+03:00"}, "hour", aggregations=COUNT, compare="previous_period"
    ),
    "helsinki_week_after_autumn_change_previous_period": _q(
        _week("2019-10-28T00:00:00+02:00", "2019-11-04T00:00:00+02:00", "Europe/Helsinki"),
        "day",
        compare="previous_period",
        totals=True,
    ),
    "helsinki_autumn_day_previous_period": _q(
        AUTUMN_DAY, "hour", aggregations=COUNT, compare="previous_period"
    ),
    "new_york_week_after_spring_change_previous_period": _q(
        _week("2019-03-11T00:00:00-04:00", "2019-03-18T00:00:00-04:00", "America/New_York"),
        "day",
        compare="previous_period",
        totals=True,
    ),
    "new_york_week_after_autumn_change_previous_period": _q(
        _week("2019-11-04T00:00:00-05:00", "2019-11-11T00:00:00-05:00", "America/New_York"),
        "day",
        group_by=["device_type"],
        aggregations=COUNT,
        compare="previous_period",
    ),
    "los_angeles_short_day_previous_period": _q(
        _week("2019-03-10T00:00:00-08:00", "2019-03-11T00:00:00-07:00", "America/Los_Angeles"),
        "hour",
        aggregations=COUNT,
        compare="previous_period",
        totals=True,
    ),
    "sao_paulo_week_after_last_dst_previous_period": _q(
        _week("2019-02-18T00:00:00-03:00", "2019-02-25T00:00:00-03:00", "America/Sao_Paulo"),
        "day",
        compare="previous_period",
    ),
    "utc_hours_previous_period": _q(
        {"start": "2019-06-10T10:30:00Z", "end": "2019-06-11T18:15:00Z"},
        "fifteen_minute",
        aggregations=COUNT,
        compare="previous_period",
        totals=True,
    ),
    "helsinki_feb29_previous_year": _q(
        _week("2020-02-29T00:00:00+02:00", "2020-03-01T00:00:00+02:00", "Europe/Helsinki"),
        "hour",
        compare="previous_year",
        totals=True,
    ),
    "utc_february_2020_previous_year": _q(
        {"start": "2020-02-01T00:00:00Z", "end": "2020-03-01T00:00:00Z"},
        "day",
        aggregations=COUNT,
        compare="previous_year",
    ),
    "helsinki_days_across_feb29_previous_year": _q(
        _week("2020-02-27T12:00:00+02:00", "2020-03-02T12:00:00+02:00", "Europe/Helsinki"),
        "day",
        group_by=["country"],
        compare="previous_year",
        totals=True,
    ),
    "new_york_spring_gap_hours_previous_year": _q(
        _week("2020-03-10T02:30:00-04:00", "2020-03-10T09:00:00-04:00", "America/New_York"),
        "hour",
        aggregations=COUNT,
        compare="previous_year",
    ),
    "top_countries_given_interval_with_totals": _q(
        JUNE_UTC,
        "all",
        group_by=["country"],
        order_by=[{"field": "count", "direction": "desc"}],
        limit=5,
        compare={"start": "2019-05-01T00:00:00Z", "end": "2019-06-01T00:00:00Z"},
        totals=True,
    ),
    "rooms_top_three_with_totals": _q(
        JUNE_UTC,
        "all",
        group_by=["rooms"],
        order_by=[{"field": "count", "direction": "desc"}],
        limit=3,
        totals=True,
    ),
    "two_arrays_by_week_with_totals": _q(
        JUNE_UTC,
        "week",
        group_by=["distinct_landing_urls", "rooms"],
        order_by=[{"field": "count", "direction": "desc"}],
        limit=10,
        totals=True,
    ),
    "monthly_filtered_with_totals": _q(
        HELSINKI_YEAR,
        "month",
        filters=_leaf("in", "country", values=["FI", "SE"]),
        totals=True,
    ),
    "empty_year_with_totals": _q(
        {"start": "2018-01-01T00:00:00Z", "end": "2018-12-01T00:00:00Z"}, "month", totals=True
    ),
    "countries_second_page_with_totals_and_previous_period": _q(
        JUNE_UTC,
        "all",
        group_by=["country"],
        order_by=[{"field": "count", "direction": "desc"}],
        limit=4,
        offset=3,
        compare="previous_period",
        totals=True,
    ),
    "cities_by_day_page": _q(
        JUNE_UTC,
        "day",
        group_by=["city"],
        aggregations=COUNT,
        order_by=[{"field": "count", "direction": "desc"}],
        limit=10,
        offset=20,
    ),
    "overlapping_compare_interval_with_totals": _q(
        {"start": "2019-06-01T00:00:00Z", "end": "2019-06-20T00:00:00Z"},
        "week",
        aggregations=[{"type": "count"}, {"type": "hyperUnique", "fields": ["visitor_id"]}],
        compare={"start": "2019-06-10T00:00:00Z", "end": "2019-06-30T00:00:00Z"},
        totals=True,
    ),
    "offset_past_the_end": _q(
        JUNE_UTC, "all", group_by=["device_type"], aggregations=COUNT, limit=10, offset=50, totals=True
    ),
}
# A top list paged through with `offset` until a page comes back short.
PAGED_TOP_LIST: dict[str, Any] = _q(
    JUNE_UTC,
    "all",
    group_by=["distinct_visited_urls"],
    aggregations=COUNT,
    order_by=[{"field": "count", "direction": "desc"}],
)
