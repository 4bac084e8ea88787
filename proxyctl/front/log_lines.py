"""nginx's stderr as the service's log: every line one JSON object, credentials redacted."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson

from proxy.runtime.redact import redact

# `2026/01/02 03:04:05 [error] 123#0: *5 message, client: ..., request: "..."`
_ERROR_LINE = re.compile(
    r"^(?P<ts>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(?P<level>[a-z]+)\] (?P<pid>\d+)#\d+: (?:\*\d+ )?(?P<message>.*)$"
)
# nginx's levels, as the service's JSON lines name theirs.
_LEVELS = {
    "debug": "debug",
    "info": "info",
    "notice": "info",
    "warn": "warning",
    "error": "error",
    "crit": "critical",
    "alert": "critical",
    "emerg": "critical",
}


def json_line(raw: str) -> str:
    """One line of nginx's stderr as one JSON log line, credentials redacted."""
    text = redact(raw.rstrip("\r\n"))
    if text.startswith("{"):
        return text  # the front's own access lines are JSON already (and hold no request line)
    matched = _ERROR_LINE.match(text)
    if matched is None:
        return _dumps(datetime.now().astimezone(), "info", None, text)
    return _dumps(
        datetime.strptime(matched["ts"], "%Y/%m/%d %H:%M:%S").astimezone(),
        _LEVELS.get(matched["level"], "info"),
        int(matched["pid"]),
        matched["message"],
    )


def _dumps(when: datetime, level: str, pid: int | None, message: str) -> str:
    # nginx prints local time without an offset; the service's lines are ISO 8601 with one.
    fields: dict[str, Any] = {"ts": when.isoformat(timespec="milliseconds"), "level": level}
    fields.update(logger="nginx.error", pid=pid, message=message)
    return orjson.dumps(fields).decode()
