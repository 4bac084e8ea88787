"""The exact reference for visitor_sessions queries: the public semantics as plain Python.

Integration tests load generated NDJSON into a real engine and compare every HTTP answer with
`evaluate` over the same raw rows. It deliberately imports nothing from `proxy/` or `schemas/`:
an oracle that shared the service's code would share its mistakes.

Semantics in brief (the docstrings below carry the details):
- a row counts when it belongs to the organization, start <= timestamp < end, and the filters
  match; filters use two-valued logic (`not X` is exactly the rows X does not match);
- buckets are aligned on the wall clock of `time_zone`; `all` is one bucket stamped with the
  interval start;
- array dimensions explode into one group per element, an empty array into a null group;
- ungrouped answers list every bucket that intersects the interval, zero-filled; grouped
  answers list the groups that have rows, ordered, then cut to `limit`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

Row = dict[str, Any]
Value = Any  # str, int or None: one dimension value of one row
Predicate = Callable[[Value], bool]
Record = tuple[datetime, list[Any]]  # bucket start (UTC), then group values and metrics
SortKeys = list[tuple[Callable[[Record], Any], bool]]  # (key, descending), most significant first
Groups = dict[tuple[datetime, tuple[Value, ...]], list[Row]]  # (bucket, group values) → rows

NUMERIC_DIMENSIONS = frozenset({"session_duration_secs", "distinct_visited_urls_count"})
ARRAY_DIMENSIONS = frozenset(
    {
        "distinct_visited_urls",
        "distinct_landing_urls",
        "distinct_referrer_urls",
        "distinct_search_terms",
        "rooms",
    }
)
MINUTES_PER_BUCKET = {"minute": 1, "fifteen_minute": 15, "thirty_minute": 30}
MONTHS_PER_BUCKET = {"month": 1, "quarter": 3, "year": 12}


# --- time -----------------------------------------------------------------------------------


def parse_instant(text: str) -> datetime:
    """An ISO-8601 date-time with offset or Z, as a UTC instant cut to whole milliseconds."""
    instant = datetime.fromisoformat(text)
    if instant.tzinfo is None:
        raise ValueError(f"{text!r} has no offset")
    instant = instant.astimezone(UTC)
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


@lru_cache(maxsize=1 << 20)
def _row_instant(text: str) -> datetime:
    return parse_instant(text)


def start_of_local_day(day: date, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) of a calendar day in `zone`; fold=0 picks the first midnight."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _first_day_of_bucket(day: date, granularity: str) -> date:
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=day.weekday())  # Monday
    step = MONTHS_PER_BUCKET[granularity]
    return date(day.year, (day.month - 1) // step * step + 1, 1)


def bucket_start(instant: datetime, granularity: str, zone: ZoneInfo) -> datetime:
    """Start (UTC) of the `granularity` bucket of `zone` that holds `instant` (not for `all`)."""
    local = instant.astimezone(zone)
    if granularity in MINUTES_PER_BUCKET:
        size = MINUTES_PER_BUCKET[granularity]
        midnight = start_of_local_day(local.date(), zone)
        elapsed = (instant - midnight) // timedelta(minutes=1)
        return midnight + timedelta(minutes=elapsed // size * size)
    if granularity == "hour":
        # `local` carries fold=1 inside a repeated autumn hour, and replace() keeps it.
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return start_of_local_day(_first_day_of_bucket(local.date(), granularity), zone)


def _next_bucket_start(start: datetime, granularity: str, zone: ZoneInfo) -> datetime:
    if granularity in MINUTES_PER_BUCKET:
        step = timedelta(minutes=MINUTES_PER_BUCKET[granularity])
        return bucket_start(start + step, granularity, zone)
    if granularity == "hour":
        return bucket_start(start + timedelta(hours=1), granularity, zone)
    day = start.astimezone(zone).date()
    if granularity in ("day", "week"):
        return start_of_local_day(day + timedelta(days=1 if granularity == "day" else 7), zone)
    months = day.year * 12 + day.month - 1 + MONTHS_PER_BUCKET[granularity]
    return start_of_local_day(date(months // 12, months % 12 + 1, 1), zone)


def bucket_starts(start: datetime, end: datetime, granularity: str, zone: ZoneInfo) -> list[datetime]:
    """Starts of every bucket that intersects [start, end); `all` is the one bucket at `start`."""
    if granularity == "all":
        return [start]
    starts = [bucket_start(start, granularity, zone)]
    while (following := _next_bucket_start(starts[-1], granularity, zone)) < end:
        assert following > starts[-1], "buckets must advance"
        starts.append(following)
    return starts


def format_timestamp(instant: datetime, zone: ZoneInfo) -> str:
    """`2019-01-01T00:00:00.000+02:00` on the wall clock of `zone`; `Z` for a zero offset."""
    local = instant.astimezone(zone)
    text = f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond // 1000:03d}"
    offset = local.utcoffset() or timedelta(0)
    if not offset:
        return text + "Z"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{text}{'-' if offset < timedelta(0) else '+'}{minutes // 60:02d}:{minutes % 60:02d}"


# --- dimension values and filters -----------------------------------------------------------


def dimension_values(row: Row, dimension: str) -> list[Value]:
    """What a row holds for a dimension: one value, or each array element; empty array → [None]."""
    value = row.get(dimension)
    if dimension in ARRAY_DIMENSIONS:
        return list(value) if value else [None]
    return [value]


def _as_number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    try:
        return int(value) if re.fullmatch(r"-?\d+", str(value)) else float(value)
    except (TypeError, ValueError):
        return None


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _equal_to(dimension: str, wanted: Any) -> Predicate:
    if wanted is None:
        return lambda value: value is None
    if dimension in NUMERIC_DIMENSIONS:
        number = _as_number(wanted)
        return lambda value: value is not None and number is not None and value == number
    text = _as_text(wanted)
    return lambda value: value == text


def _limit(given: Any, key: Callable[[Any], Any]) -> Any:
    if given is None:
        return None
    limit = key(given)
    if limit is None:
        raise ValueError(f"bound {given!r} is not a number")
    return limit


def _bound(spec: dict[str, Any]) -> Predicate:
    dimension = spec["dimension"]
    ordering = spec.get("ordering") or ("numeric" if dimension in NUMERIC_DIMENSIONS else "lexicographic")
    if ordering not in ("numeric", "lexicographic"):
        raise ValueError(f"unsupported bound ordering {ordering!r}")
    key: Callable[[Any], Any] = _as_number if ordering == "numeric" else _as_text
    low, high = (_limit(spec.get(side), key) for side in ("lower", "upper"))

    def test(value: Value) -> bool:
        this = None if value is None else key(value)
        if this is None:  # a bound never matches null
            return False
        above = low is None or (this > low if spec.get("lowerStrict") else this >= low)
        below = high is None or (this < high if spec.get("upperStrict") else this <= high)
        return above and below

    return test


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """SQL LIKE as a whole-value regex: `%` any run, `_` one character, backslash escapes."""
    parts, escaped = [], False
    for char in pattern:
        if escaped or char not in "\\%_":
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            parts.append(".*" if char == "%" else ".")
    if escaped:
        parts.append(re.escape("\\"))
    return re.compile("".join(parts), re.DOTALL)


def _search(query: dict[str, Any]) -> Predicate:
    needle = query["value"]
    if query["type"] == "contains":
        return lambda value: value is not None and needle in value
    if query["type"] == "insensitive_contains":
        return lambda value: value is not None and needle.lower() in value.lower()
    raise ValueError(f"unsupported search type {query['type']!r}")


def _leaf_predicate(spec: dict[str, Any]) -> Predicate:
    kind, dimension = spec["type"], spec["dimension"]
    if kind == "selector":
        return _equal_to(dimension, spec["value"])
    if kind == "in":
        tests = [_equal_to(dimension, wanted) for wanted in spec["values"]]
        return lambda value: any(test(value) for test in tests)
    if kind == "bound":
        return _bound(spec)
    if kind == "regex":
        compiled = re.compile(spec["pattern"])
        return lambda value: value is not None and compiled.search(value) is not None
    if kind == "like":
        whole = like_to_regex(spec["pattern"])
        return lambda value: value is not None and whole.fullmatch(value) is not None
    if kind == "search":
        return _search(spec["query"])
    raise ValueError(f"unsupported filter type {kind!r}")


def matches(row: Row, spec: dict[str, Any]) -> bool:
    """Two-valued: a leaf matches when ANY of the row's values for its dimension matches."""
    kind = spec["type"]
    if kind == "and":
        return all(matches(row, part) for part in spec["fields"])
    if kind == "or":
        return any(matches(row, part) for part in spec["fields"])
    if kind == "not":
        return not matches(row, spec["field"])
    test = _leaf_predicate(spec)
    return any(test(value) for value in dimension_values(row, spec["dimension"]))


def _all_filters(filters: Any) -> list[dict[str, Any]]:
    if filters is None:
        return []
    return list(filters) if isinstance(filters, list) else [filters]


# --- metrics --------------------------------------------------------------------------------

Metric = Callable[[list[Row]], Any]


def _average(field: str) -> Metric:
    return lambda rows: sum(row[field] for row in rows) / len(rows) if rows else None


def _distinct(field: str) -> Metric:
    return lambda rows: float(len({row[field] for row in rows}))


def metric_columns(aggregations: Iterable[dict[str, Any]]) -> list[tuple[str, Metric]]:
    """(output name, function of the group's rows) per metric, in response order."""
    columns: list[tuple[str, Metric]] = []
    for aggregation in aggregations:
        kind, fields = aggregation["type"], aggregation.get("fields") or []
        if kind == "count":
            columns.append(("count", len))
        elif kind == "avg":
            columns += [(f"{field}_avg", _average(field)) for field in fields]
        elif kind == "hyperUnique":
            columns += [(f"{field}_hyper_unique", _distinct(field)) for field in fields]
        else:
            raise ValueError(f"unsupported aggregation {kind!r}")
    return columns


# --- the query ------------------------------------------------------------------------------


def selected_rows(rows: Iterable[Row], organization_id: str, start: datetime, end: datetime) -> Iterator[Row]:
    """Rows of the organization whose session starts in [start, end)."""
    for row in rows:
        if row["organization_id"] != organization_id:
            continue
        if start <= _row_instant(row["timestamp"]) < end:
            yield row


def oracle_total(rows: Iterable[Row], organization_id: str, start: str, end: str) -> int:
    """How many sessions of the organization start in [start, end) (ISO-8601 strings)."""
    return sum(1 for _ in selected_rows(rows, organization_id, parse_instant(start), parse_instant(end)))


def _null_first(position: int) -> Callable[[Record], tuple[bool, Any]]:
    return lambda record: (record[1][position] is not None, record[1][position])


def _bucket_time(record: Record) -> datetime:
    return record[0]


def order_records(
    records: list[Record], names: list[str], group_by: list[str], order_by: list[dict[str, Any]]
) -> None:
    """Sort in place: order_by columns, then the other group values (null first), then time.

    Without order_by: time, then group values. `names` are the columns after `timestamp`.
    """
    keys: SortKeys = []
    for order in order_by:
        field = order["field"]
        key = _bucket_time if field == "timestamp" else _null_first(names.index(field))
        keys.append((key, order.get("direction", "asc") == "desc"))
    explicit = {order["field"] for order in order_by}
    rest: SortKeys = [(_null_first(names.index(d)), False) for d in group_by if d not in explicit]
    time_key: SortKeys = [] if "timestamp" in explicit else [(_bucket_time, False)]
    keys += rest + time_key if order_by else time_key + rest
    for key, descending in reversed(keys):  # stable sorts, least significant key first
        records.sort(key=key, reverse=descending)


def _groups(rows: Iterable[Row], payload: dict[str, Any], zone: ZoneInfo, start: datetime) -> Groups:
    granularity, group_by = payload["granularity"], payload.get("group_by") or []
    groups: Groups = {}
    for row in rows:
        instant = _row_instant(row["timestamp"])
        bucket = start if granularity == "all" else bucket_start(instant, granularity, zone)
        for key in itertools.product(*(dimension_values(row, d) for d in group_by)):
            groups.setdefault((bucket, key), []).append(row)
    return groups


# --- compare --------------------------------------------------------------------------------


def earliest_at_or_after(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant (UTC, whole minutes) whose wall clock in `zone` reads `wall` or later:
    found by walking minute by minute, unlike the service's arithmetic."""
    instant = wall.replace(tzinfo=UTC) - timedelta(hours=15)
    while instant.astimezone(zone).replace(tzinfo=None) < wall:
        instant += timedelta(minutes=1)
    return instant


def _is_midnight(instant: datetime, zone: ZoneInfo) -> bool:
    local = instant.astimezone(zone)
    return (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0)


def _previous_period(start: datetime, end: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    if _is_midnight(start, zone) and _is_midnight(end, zone):
        days = (end.astimezone(zone).date() - start.astimezone(zone).date()).days
        first = start.astimezone(zone).date() - timedelta(days=days)
        return earliest_at_or_after(datetime(first.year, first.month, first.day), zone), start
    return start - (end - start), start


def _year_back(instant: datetime, zone: ZoneInfo) -> datetime:
    local = instant.astimezone(zone).replace(tzinfo=None)
    day = 28 if (local.month, local.day) == (2, 29) else local.day
    return earliest_at_or_after(local.replace(year=local.year - 1, day=day), zone)


def comparison_interval(payload: dict[str, Any]) -> tuple[datetime, datetime]:
    """The interval a payload's `compare` names, in UTC."""
    interval, compare = payload["interval"], payload["compare"]
    zone = ZoneInfo(interval.get("time_zone") or "UTC")
    start, end = parse_instant(interval["start"]), parse_instant(interval["end"])
    if compare == "previous_period":
        return _previous_period(start, end, zone)
    if compare == "previous_year":
        return _year_back(start, zone), _year_back(end, zone)
    return parse_instant(compare["start"]), parse_instant(compare["end"])


def evaluate(rows: list[Row], organization_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The public response to `payload` from raw NDJSON rows: `{"fields", "data"}`, with
    `totals` and `comparison` when asked."""
    answer = _evaluate_one(rows, organization_id, payload)
    if payload.get("compare") is not None:
        start, end = comparison_interval(payload)
        zone = ZoneInfo(payload["interval"].get("time_zone") or "UTC")
        other = {
            **payload,
            "interval": {**payload["interval"], "start": start.isoformat(), "end": end.isoformat()},
        }
        printed = {
            "start": format_timestamp(start, zone),
            "end": format_timestamp(end, zone),
            "time_zone": zone.key,
        }
        answer["comparison"] = {"interval": printed, **_evaluate_one(rows, organization_id, other)}
    return answer


def _evaluate_one(rows: list[Row], organization_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    interval = payload["interval"]
    zone = ZoneInfo(interval.get("time_zone") or "UTC")
    start, end = parse_instant(interval["start"]), parse_instant(interval["end"])
    group_by: list[str] = payload.get("group_by") or []
    filters = _all_filters(payload.get("filters"))
    chosen = [
        row
        for row in selected_rows(rows, organization_id, start, end)
        if all(matches(row, spec) for spec in filters)
    ]
    groups = _groups(chosen, payload, zone, start)
    metrics = metric_columns(payload["aggregations"])
    if not group_by:
        buckets = bucket_starts(start, end, payload["granularity"], zone)
        groups = {(bucket, ()): groups.get((bucket, ()), []) for bucket in buckets}
    records: list[Record] = [
        (bucket, [*key, *(metric(members) for _, metric in metrics)])
        for (bucket, key), members in groups.items()
    ]
    names = [*group_by, *(name for name, _ in metrics)]
    order_records(records, names, group_by, payload.get("order_by") or [])
    if payload.get("limit") is not None:
        offset = payload.get("offset") or 0
        records = records[offset : offset + payload["limit"]]
    fields = [{"name": name, "type": "dimension"} for name in ("timestamp", *group_by)]
    fields += [{"name": name, "type": "metric"} for name, _ in metrics]
    data = [[format_timestamp(bucket, zone), *values] for bucket, values in records]
    answer: dict[str, Any] = {"fields": fields, "data": data}
    if payload.get("totals"):
        # Over the matching sessions themselves: no bucket, no explosion, no limit.
        answer["totals"] = [metric(chosen) for _, metric in metrics]
    return answer
