"""Credentials out of log lines, whatever a client put where: request lines, query strings, headers.

The service's own log lines never carry a header or a query string (runtime/logs.py); the
server layer's do: gunicorn's error log quotes a refused request line, nginx's error log the
request line of a request it gave up on. Every such line passes through `redact` first.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

# Each pattern keeps what names the credential (its scheme or parameter) and drops its value.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # API keys, whole: `rpk_<key id>_<secret>`, also inside a longer token or percent-encoded text.
    (re.compile(r"rpk_[A-Za-z0-9_-]*"), REDACTED),
    # A JSON Web Token anywhere (its header always starts `eyJ`, base64 of `{"`).
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?"), REDACTED),
    # Authorization schemes, separated by spaces, `%20` or `+` (a query string's spellings).
    (
        re.compile(r"(?i)\b(token|bearer|basic|digest)((?:\s|%20|\+)+)[^\s\"',;&]+"),
        rf"\1\2{REDACTED}",
    ),
    # A query string after a path: nothing in one is needed in a log line.
    (re.compile(r"(/[^\s\"'?]*)\?[^\s\"']*"), rf"\1?{REDACTED}"),
    # Credential-looking parameters outside a path (`api_key=...`, `password: ...`).
    (
        re.compile(
            r"(?i)\b(authorization|api[_-]?key|access[_-]?token|password|secret)(\s*[=:]\s*)"
            r"(?!(?:token|bearer|basic|digest)\b|\[redacted\])[^\s\"',;&]+"
        ),
        rf"\1\2{REDACTED}",
    ),
)


def redact(text: str) -> str:
    """`text` with every credential-shaped value replaced by `[redacted]`."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactFilter(logging.Filter):
    """A logging filter that renders each record's message once, redacted, in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the message and its arguments by their redacted rendering; keep the record."""
        record.msg = redact(record.getMessage())
        record.args = None
        return True
