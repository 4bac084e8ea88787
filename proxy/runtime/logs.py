"""JSON log lines on stderr for every `proxy.*` logger: one per request (`proxy.access_log`)
and one audit event per authorized query (`proxy.audit`).

Callers pass their structured fields as `extra={"fields": {...}}`. Nothing here knows about
credentials, so nothing that carries one (headers, query strings, bodies) is ever passed in.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

access_log = logging.getLogger("proxy.access_log")
audit_log = logging.getLogger("proxy.audit")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class _StderrHandler(logging.StreamHandler[TextIO]):
    # Looks sys.stderr up on every record (as logging's last-resort handler does), so a
    # stream swapped after start-up, by pytest's capture for one, still gets the lines.
    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Send `proxy.*` records to stderr as JSON; calling it again changes nothing."""
    logger = logging.getLogger("proxy")
    if any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    # Exactly one line per event, whatever handlers the root logger has been given.
    logger.propagate = False


def log_request(fields: dict[str, Any]) -> None:
    """The one access-log line of a request."""
    message = f"{fields['method']} {fields['route']} {fields['status']}"
    access_log.info(message, extra={"fields": {"event": "request", **fields}})


def log_audit(request_id: str, principal: str, organization: str, explain: bool) -> None:
    """Who was let to query which organization, and whether only to explain."""
    fields = {
        "event": "query_authorized",
        "request_id": request_id,
        "principal": principal,
        "organization": organization,
        "explain": explain,
    }
    audit_log.info("%s queries %s", principal, organization, extra={"fields": fields})
