"""JSON responses: documents encoded with orjson, or bodies the service encoded already."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response encoded with orjson."""
    return encoded_json(orjson.dumps(body), status, headers)


def encoded_json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A response for a JSON document that is already encoded."""
    return Response(body, status=status, headers=headers, mimetype="application/json")
