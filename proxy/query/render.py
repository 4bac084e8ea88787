"""Backend rows → the public response, as the plan says: zero-fill, metric types, order, printed times."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from itertools import islice
from operator import itemgetter
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from proxy.errors import ResultTooLarge
from proxy.query.buckets import format_timestamp
from proxy.query.catalog import supported
from proxy.query.ordering import SortColumn
from proxy.query.plan import BackendRow, ResultPlan

# A response row: the printed bucket start, the group values, the metric values.
OutputRow = list[Any]


class MetricOutput(NamedTuple):
    """How a metric's backend values become response values."""

    kept: type | None  # values of exactly this type are already response values
    convert: Callable[[Any], Any]


# Aggregation type → how its values are answered.
METRIC_OUTPUTS: dict[str, MetricOutput] = {
    "count": MetricOutput(int, lambda value: 0 if value is None else int(value)),
    "hyperUnique": MetricOutput(float, lambda value: 0.0 if value is None else float(value)),
    # Every value converts: a float may be NaN or infinite, which the response shows as null.
    "avg": MetricOutput(
        None, lambda value: None if value is None or not math.isfinite(value) else float(value)
    ),
}


def _convert_metrics(plan: ResultPlan, rows: list[OutputRow]) -> None:
    """Each metric column through its type's conversion, in place; skipped when already converted."""
    for index, agg in enumerate(plan.metrics, start=1 + len(plan.group_by)):
        kept, convert = supported(METRIC_OUTPUTS, agg.type, "aggregation")
        # Checking the types in one C-level pass is much cheaper than converting in Python.
        if kept is not None and set(map(type, map(itemgetter(index), rows))) <= {kept}:
            continue
        for row in rows:
            row[index] = convert(row[index])


def _zero_filled(plan: ResultPlan, rows: Iterable[BackendRow]) -> list[OutputRow]:
    by_bucket = {row[0]: row[1:] for row in rows}
    if plan.one_bucket and by_bucket:
        # Druid stamps the single bucket with its own idea of the start; there is only one.
        by_bucket = {plan.bucket_starts_ms[0]: next(iter(by_bucket.values()))}
    empty = (None,) * len(plan.metrics)
    return [[bucket, *by_bucket.get(bucket, empty)] for bucket in plan.bucket_starts_ms]


def _in_order(rows: list[OutputRow], columns: tuple[SortColumn, ...]) -> bool:
    """Whether each row sorts at or after the one before it (nulls first ascending, last descending)."""
    keys = [(column.position, column.descending) for column in columns]
    for previous, row in zip(rows, islice(rows, 1, None)):
        for index, descending in keys:
            before, after = (row[index], previous[index]) if descending else (previous[index], row[index])
            if before != after:
                if before is None or (after is not None and before < after):
                    break
                return False
    return True


def _in_time_then_group_order(rows: list[OutputRow]) -> bool:
    """`_in_order` for the default order over one group, specialised for large results."""
    previous_bucket, previous_value = rows[0][0], rows[0][1]
    for row in islice(rows, 1, None):
        bucket, value = row[0], row[1]
        if bucket != previous_bucket:
            if bucket < previous_bucket:
                return False
        elif previous_value is not None and (value is None or value < previous_value):
            return False
        previous_bucket, previous_value = bucket, value
    return True


def is_ordered(plan: ResultPlan, rows: list[OutputRow]) -> bool:
    """Whether rows already stand in the plan's result order."""
    if not rows:
        return True
    if not plan.query.order_by and len(plan.group_by) == 1:
        return _in_time_then_group_order(rows)
    return _in_order(rows, plan.sort_columns)


def _nulls_first_key(index: int) -> Callable[[OutputRow], tuple[bool, Any]]:
    return lambda row: ((value := row[index]) is not None, value)


def _sort(plan: ResultPlan, rows: list[OutputRow]) -> None:
    # Stable sorts from the least significant column up; with (is-not-null, value) keys nulls come
    # first ascending and last descending.
    for column in reversed(plan.sort_columns):
        rows.sort(key=_nulls_first_key(column.position), reverse=column.descending)


def _grouped(plan: ResultPlan, rows: Sequence[BackendRow]) -> list[OutputRow]:
    if len(rows) > plan.max_rows:
        raise ResultTooLarge(
            f"The result has more than {plan.max_rows} rows; add a `limit` or narrow the query.",
            {"limit": [f"At most {plan.max_rows} rows per response."]},
        )
    data = list(map(list, rows))
    _convert_metrics(plan, data)
    # Both backends sort as the service does (Druid's limitSpec, the SQL ORDER BY): one linear
    # check instead of a sort, which is only a fallback for a collation that differs.
    if not is_ordered(plan, data):
        _sort(plan, data)
    if plan.query.limit is not None:
        del data[plan.query.limit :]
    return data


def render(plan: ResultPlan, rows: Sequence[BackendRow]) -> dict[str, Any]:
    """Backend rows → `{"fields", "data"}`: zero-filled or grouped, ordered, capped."""
    if plan.grouped:
        data = _grouped(plan, rows)
    else:
        data = _zero_filled(plan, rows)
        _convert_metrics(plan, data)
    _print_timestamps(plan, data)
    return {"fields": plan.fields(), "data": data}


def render_totals(plan: ResultPlan, values: Sequence[Any] | None) -> list[Any]:
    """One interval's totals (metric values in plan order; None: no sessions) → response values."""
    given = values if values is not None else (None,) * len(plan.metrics)
    return [
        supported(METRIC_OUTPUTS, agg.type, "aggregation").convert(value)
        for agg, value in zip(plan.metrics, given)
    ]


def printed_interval(plan: ResultPlan) -> dict[str, str]:
    """A plan's interval as the answer shows it: both ends in the zone's offset, and the zone."""
    interval = plan.query.interval
    return {
        "start": format_timestamp(interval.start, plan.zone),
        "end": format_timestamp(interval.end, plan.zone),
        "time_zone": plan.zone.key,
    }


class Answers(NamedTuple):
    """What the backend answered for a plan: its rows, its comparison's, one totals row per interval."""

    rows: Sequence[BackendRow]
    comparison_rows: Sequence[BackendRow] = ()
    totals: Sequence[Sequence[Any] | None] = ()


def render_answer(plan: ResultPlan, answers: Answers) -> dict[str, Any]:
    """The whole response: `render`'s, plus `totals` and `comparison` when the query asks."""
    body = render(plan, answers.rows)
    totals = [render_totals(plan, values) for values in answers.totals]
    if totals:
        body["totals"] = totals[0]
    if plan.comparison is not None:
        compared = {
            "interval": printed_interval(plan.comparison),
            **render(plan.comparison, answers.comparison_rows),
        }
        if totals:
            compared["totals"] = totals[1]
        body["comparison"] = compared
    return body


# Printed bucket starts by (epoch ms, zone name), shared by every request: dashboards print the
# same days again and again. Emptied when it grows past the cap.
_PRINTED: dict[tuple[int, str], str] = {}
_PRINTED_CAP = 100_000


def _printed(bucket: int, zone: ZoneInfo) -> str:
    key = (bucket, zone.key)
    text = _PRINTED.get(key)
    if text is None:
        if len(_PRINTED) >= _PRINTED_CAP:
            _PRINTED.clear()
        text = _PRINTED[key] = format_timestamp(datetime.fromtimestamp(bucket / 1000, UTC), zone)
    return text


class _PrintedStarts(dict[int, str]):
    """The bucket starts of one render, each printed or found in the shared cache once."""

    def __init__(self, zone: ZoneInfo) -> None:
        super().__init__()
        self.zone = zone

    def __missing__(self, bucket: int) -> str:
        text = self[bucket] = _printed(bucket, self.zone)
        return text


def _print_timestamps(plan: ResultPlan, rows: list[OutputRow]) -> None:
    """Each row's bucket start → its printed form, in place (the rows are the render's own)."""
    if plan.one_bucket:
        start = _printed(plan.bucket_starts_ms[0], plan.zone)
        for row in rows:
            row[0] = start
        return
    printed = _PrintedStarts(plan.zone)
    for row in rows:
        row[0] = printed[row[0]]
