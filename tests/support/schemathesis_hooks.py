"""Schemathesis hooks for tests/hardening/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

- `date-time` values fall in a few days around the hardening data, in any offset: a date drawn
  from years 1–9999 would almost never make an interval the server can answer (at most 366 days,
  at most 10,000 buckets), and those rules are beyond JSON Schema.
- An interval's two instants are put in order, as any caller does.
- Every call is written as a JSON line to $SCHEMATHESIS_RECORD (generation mode, operation,
  status, the field paths of a 400), and every failure to the same file.
- A "schema-valid request rejected" (ST202) failure is dropped, and recorded as accepted, only
  when the answer is a 400 whose every field path is a documented cross-field rule
  (schemas/json_schema.py CROSS_FIELD_RULES, listed in the document and /meta).
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import schemathesis
from hypothesis import strategies as st

from schemas.json_schema import CROSS_FIELD_RULES
from tests.support.tenants import DAYS, FIRST_DAY

_START = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC)
# Six days: even minute buckets stay under the default 10,000.
_WINDOW = timedelta(days=6)


def _instant(offset_minutes: int, seconds: int) -> str:
    zone = timezone(timedelta(minutes=offset_minutes))
    return (_START + timedelta(seconds=seconds)).astimezone(zone).isoformat()


schemathesis.openapi.format(
    "date-time",
    st.builds(
        _instant,
        st.sampled_from([0, 60, -300, 330, 345, -570, 840]),
        st.integers(0, int(min(_WINDOW, timedelta(days=DAYS)).total_seconds())),
    ),
)


def _parsed(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _in_order(interval: Any) -> Any:
    if not isinstance(interval, dict):
        return interval
    start, end = _parsed(interval.get("start")), _parsed(interval.get("end"))
    if start is None or end is None or start.tzinfo is None or end.tzinfo is None or start < end:
        return interval
    later = max(start, end) + timedelta(hours=1)
    return {**interval, "start": min(start, end).isoformat(), "end": later.isoformat()}


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    """Start before end, when both are instants (the interval's, and a compare interval's): in
    order, an hour apart at least."""
    if not isinstance(body, dict):
        return body
    return {**body, **{key: _in_order(body[key]) for key in ("interval", "compare") if key in body}}


def _field_paths(response: Any) -> list[str]:
    try:
        document = json.loads(response.content or b"null")
    except ValueError:
        return []
    errors = document.get("errors") if isinstance(document, dict) else None
    return sorted(errors) if isinstance(errors, dict) else []


def _write(record: dict[str, Any]) -> None:
    with open(os.environ["SCHEMATHESIS_RECORD"], "a") as out:
        out.write(json.dumps(record) + "\n")


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """One JSON line per call."""
    _write(
        {
            "mode": str(case.meta.generation.mode) if case.meta else None,
            "phase": str(case.meta.phase.name) if case.meta else None,
            "method": case.method,
            "path": case.path,
            "status": response.status_code,
            "field_paths": _field_paths(response) if response.status_code == 400 else [],
        }
    )


# "filters…value": any path from `filters` down to a `value`.
_RULES = [re.compile("^" + re.escape(path).replace("…", r"(\..+)?\.") + "$") for path in CROSS_FIELD_RULES]


def is_documented_rule(field_path: str) -> bool:
    """Whether a 400's field path is one of the documented cross-field rules."""
    return any(rule.match(field_path) for rule in _RULES)


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but a valid request refused for a documented cross-field rule."""
    paths = _field_paths(response) if response.status_code == 400 else []
    accepted = failure.code == "ST202" and bool(paths) and all(is_documented_rule(p) for p in paths)
    _write({"failure": failure.code, "title": failure.title, "field_paths": paths, "accepted": accepted})
    return not accepted
