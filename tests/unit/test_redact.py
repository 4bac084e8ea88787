"""Credentials out of log lines, whatever shape they come in."""

from __future__ import annotations

import logging

import pytest

from proxy.runtime.redact import RedactFilter, redact

KEY = "rpk_0123456789abcdef_" + "S" * 43
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Invalid HTTP request line: 'Token {KEY}'", "Invalid HTTP request line: 'Token [redacted]'"),
        (f"Authorization: Bearer {JWT}", "Authorization: Bearer [redacted]"),
        ("authorization=s3cr3t", "authorization=[redacted]"),
        (f"bearer {JWT}", "bearer [redacted]"),
        ("Basic dXNlcjpwYXNz", "Basic [redacted]"),
        (f'request: "GET /x?key={KEY}&a=1 HTTP/1.1"', 'request: "GET /x?[redacted] HTTP/1.1"'),
        ('request: "GET /api/reporting?x=1 HTTP/1.1"', 'request: "GET /api/reporting?[redacted] HTTP/1.1"'),
        (f"Token%20{KEY}", "Token%20[redacted]"),
        ("api_key=abc123 password: hunter2", "api_key=[redacted] password: [redacted]"),
        (f"xx{KEY}yy", "xx[redacted]"),
        ("GET /healthz HTTP/1.1 200", "GET /healthz HTTP/1.1 200"),
        ("Worker exiting (pid: 12)", "Worker exiting (pid: 12)"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_filter_redacts_the_rendered_message() -> None:
    record = logging.LogRecord(
        "gunicorn.error", logging.WARNING, __file__, 1, "line: %r", (f"Token {KEY}",), None
    )
    assert RedactFilter().filter(record)
    assert (record.getMessage(), record.args) == ("line: 'Token [redacted]'", None)
