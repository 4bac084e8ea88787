"""nginx's stderr lines as the service's JSON log lines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxyctl.front.log_lines import json_line

KEY = "rpk_0123456789abcdef_" + "S" * 43


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "2026/01/02 03:04:05 [error] 123#123: *5 upstream timed out, client: 127.0.0.1, "
            f'request: "GET /x?key={KEY} HTTP/1.1"\n',
            {
                "level": "error",
                "logger": "nginx.error",
                "pid": 123,
                "message": 'upstream timed out, client: 127.0.0.1, request: "GET /x?[redacted] HTTP/1.1"',
            },
        ),
        (
            "2026/01/02 03:04:05 [emerg] 9#9: bind() to 127.0.0.1:80 failed (13: Permission denied)\n",
            {
                "level": "critical",
                "logger": "nginx.error",
                "pid": 9,
                "message": "bind() to 127.0.0.1:80 failed (13: Permission denied)",
            },
        ),
        ("nginx: [emerg] unexpected end of file\n", {"level": "info", "logger": "nginx.error", "pid": None}),
        ('{"logger":"nginx.access","status":400}\n', {"logger": "nginx.access", "status": 400}),
    ],
    ids=["error_with_a_key", "emerg", "unparsed", "access_json"],
)
def test_json_line(raw: str, expected: dict[str, Any]) -> None:
    line = json.loads(json_line(raw))
    assert {name: line.get(name) for name in expected} == expected
    assert KEY[4:] not in json_line(raw)


def test_the_time_gets_an_offset() -> None:
    line = json.loads(json_line("2026/01/02 03:04:05 [error] 1#1: x\n"))
    assert line["ts"].startswith("2026-01-02T03:04:05.000") and line["ts"][-6] in "+-"
