"""The session input contract: one JSON object per line, validated in a single streaming pass.

A line is a JSON object with exactly these keys (`?` = may be missing):

    timestamp                    "YYYY-MM-DDTHH:MM:SS[.fff]" + "Z" or "±HH:MM"; the session start,
                                 from 1000-01-01 to before 9000-01-01 (UTC), as queries name
    organization_id              canonical lowercase UUID string
    session_id, visitor_id       non-empty strings
    browser_name?, browser_version?, city?, country?, os_name?, ip_organization?
                                 non-empty string or null
    device_type?                 "desktop", "tablet", "mobile" or null
    distinct_visited_urls?       array of at most 100 distinct non-empty strings
    distinct_landing_urls?, distinct_referrer_urls?, distinct_search_terms?, rooms?
                                 array of distinct non-empty strings
    session_duration_secs, distinct_visited_urls_count
                                 integers in [0, 2^53)

Empty strings and duplicate array items are refused because the backends would disagree on
them (Druid folds "" into null in places; a duplicated item explodes into two group rows).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from schemas.request import EARLIEST, LATEST

MAX_VISITED_URLS = 100
MAX_INTEGER = 2**53
DEVICE_TYPES = frozenset({"desktop", "tablet", "mobile"})

STRING_FIELDS = (
    "browser_name",
    "browser_version",
    "city",
    "country",
    "device_type",
    "os_name",
    "ip_organization",
)
ARRAY_FIELDS = (
    "distinct_visited_urls",
    "distinct_landing_urls",
    "distinct_referrer_urls",
    "distinct_search_terms",
    "rooms",
)
INTEGER_FIELDS = ("session_duration_secs", "distinct_visited_urls_count")
REQUIRED_FIELDS = ("timestamp", "organization_id", "session_id", "visitor_id", *INTEGER_FIELDS)

# Key order of the rows `iter_sessions` yields: loaders may rely on it.
COLUMNS = (
    "timestamp_ms",
    "organization_id",
    "session_id",
    "visitor_id",
    *STRING_FIELDS,
    *ARRAY_FIELDS,
    *INTEGER_FIELDS,
)

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
# fromisoformat reads `+05:75` as +06:15; an offset is hours 00-23 and minutes 00-59.
_OFFSET = re.compile(r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidLine(ValueError):
    """A line of an input file breaks the contract; nothing from the file may be loaded."""

    def __init__(self, path: Path, line_number: int, reason: str) -> None:
        super().__init__(f"{path}:{line_number}: {reason}")
        self.path = path
        self.line_number = line_number
        self.reason = reason


@dataclass(frozen=True)
class FileSummary:
    """What a validated input holds: row count, time range (UTC) and organizations."""

    rows: int
    first_time: datetime
    last_time: datetime
    organizations: frozenset[str]


class BadRow(ValueError):
    """One line breaks the contract; carries the reason without the file position."""


def _epoch_ms(value: Any) -> int:
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise BadRow("timestamp must be ISO-8601 like 2019-01-01T00:00:00.000Z (offset or Z)")
    if not _OFFSET.search(value):
        raise BadRow("timestamp offset must be Z or ±HH:MM with HH at most 23 and MM at most 59")
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadRow(f"timestamp {value!r} is not a valid date-time") from exc
    # A session no query can name is a mistake, and near years 1 and 9999 converting to UTC
    # overflows Python's datetime.
    if not EARLIEST <= instant < LATEST:
        raise BadRow(
            f"timestamp {value!r} is outside {EARLIEST.isoformat()} to {LATEST.isoformat()}, "
            "the instants queries can name"
        )
    return (instant - _EPOCH) // timedelta(milliseconds=1)


def _organization(value: Any) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise BadRow("organization_id must be a lowercase UUID string")
    return value


def _required_string(name: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise BadRow(f"{name} must be a non-empty string")
        return value

    return check


def _optional_string(name: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is not None and (not isinstance(value, str) or not value):
            raise BadRow(f"{name} must be a non-empty string or null")
        return value

    return check


def _device_type(value: Any) -> str | None:
    if value is not None and value not in DEVICE_TYPES:
        raise BadRow("device_type must be desktop, tablet, mobile or null")
    return value  # type: ignore[no-any-return]


def _array(name: str, max_items: int | None) -> Callable[[Any], list[str]]:
    def check(value: Any) -> list[str]:
        if value == []:
            return []
        if type(value) is not list or {type(item) for item in value} != {str} or "" in value:
            raise BadRow(f"{name} must be an array of non-empty strings")
        if max_items is not None and len(value) > max_items:
            raise BadRow(f"{name} holds {len(value)} items, at most {max_items} allowed")
        if len(set(value)) != len(value):
            raise BadRow(f"{name} must not repeat an item")
        return value

    return check


def _integer(name: str) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        # bool is an int subclass; JSON true is not a count.
        if type(value) is not int or not 0 <= value < MAX_INTEGER:
            raise BadRow(f"{name} must be a non-negative integer below 2^53")
        return value

    return check


def _checks() -> dict[str, tuple[str, Callable[[Any], Any]]]:
    """Input key → (output key, check-and-normalize)."""
    checks: dict[str, tuple[str, Callable[[Any], Any]]] = {
        "timestamp": ("timestamp_ms", _epoch_ms),
        "organization_id": ("organization_id", _organization),
    }
    for name in ("session_id", "visitor_id"):
        checks[name] = (name, _required_string(name))
    for name in STRING_FIELDS:
        checks[name] = (name, _device_type if name == "device_type" else _optional_string(name))
    for name in ARRAY_FIELDS:
        limit = MAX_VISITED_URLS if name == "distinct_visited_urls" else None
        checks[name] = (name, _array(name, limit))
    for name in INTEGER_FIELDS:
        checks[name] = (name, _integer(name))
    return checks


_FIELDS = _checks()
_REQUIRED = frozenset(REQUIRED_FIELDS)
_EMPTY_ROW: dict[str, Any] = dict.fromkeys(COLUMNS)


def _parse_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise BadRow("empty line")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRow(f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(obj, dict):
        raise BadRow("a line must be a JSON object")
    return obj


def _normalize(obj: dict[str, Any]) -> dict[str, Any]:
    """Check one parsed line against the contract; return it in `COLUMNS` order."""
    if not obj.keys() >= _REQUIRED:
        raise BadRow(f"{next(name for name in REQUIRED_FIELDS if name not in obj)} is required")
    out = _EMPTY_ROW.copy()  # every column, in order, None until set
    for key, value in obj.items():
        spec = _FIELDS.get(key)
        if spec is None:
            raise BadRow(f"unknown key {key!r}")
        out[spec[0]] = spec[1](value)
    for name in ARRAY_FIELDS:
        if out[name] is None:  # missing; a present null was refused above
            out[name] = []
    return out


def read_line(raw: bytes) -> dict[str, Any]:
    """One raw line checked against the contract, as a row in `COLUMNS` order; `BadRow` if not."""
    return _normalize(_parse_object(raw))


def line_timestamp_ms(raw: bytes) -> int:
    """The session start of one raw line, UTC epoch ms, read as validation reads it; `BadRow`
    (a ValueError) if the line has none."""
    return _epoch_ms(_parse_object(raw).get("timestamp"))


def iter_sessions(path: Path) -> Iterator[dict[str, Any]]:
    """Validated rows of one file, normalized: `timestamp_ms` (UTC epoch ms), gaps filled."""
    line_number = 0
    with path.open("rb") as lines:
        for line_number, raw in enumerate(lines, start=1):
            try:
                yield read_line(raw)
            except BadRow as exc:
                raise InvalidLine(path, line_number, str(exc)) from None
    if line_number == 0:
        raise InvalidLine(path, 1, "no sessions")


def _from_ms(epoch_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=epoch_ms)


def summarize(rows: Iterable[dict[str, Any]]) -> tuple[int, int, int, frozenset[str]]:
    """Row count, first and last `timestamp_ms`, and organizations of normalized rows."""
    count, first, last = 0, MAX_INTEGER * 1000, -MAX_INTEGER * 1000
    orgs: set[str] = set()
    for row in rows:
        count += 1
        first = min(first, row["timestamp_ms"])
        last = max(last, row["timestamp_ms"])
        orgs.add(row["organization_id"])
    return count, first, last, frozenset(orgs)


def summary_of(rows: Iterable[dict[str, Any]]) -> FileSummary | None:
    """The summary of normalized rows; None when there are none."""
    count, first, last, orgs = summarize(rows)
    return FileSummary(count, _from_ms(first), _from_ms(last), orgs) if count else None


def validate_file(path: Path) -> FileSummary:
    """Stream through `path` once; raise `InvalidLine` at the first line breaking the contract."""
    summary = summary_of(iter_sessions(path))
    assert summary is not None  # iter_sessions refuses a file without lines
    return summary


def combine(summaries: Iterable[FileSummary]) -> FileSummary:
    """One summary for several files (at least one)."""
    items = list(summaries)
    return FileSummary(
        rows=sum(s.rows for s in items),
        first_time=min(s.first_time for s in items),
        last_time=max(s.last_time for s in items),
        organizations=frozenset().union(*(s.organizations for s in items)),
    )
