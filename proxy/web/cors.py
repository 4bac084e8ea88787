"""Cross-origin calls from browser frontends: CORS for the API routes (docs/console.md).

Only the exact origins of `PROXY_CORS_ORIGINS` are answered, each with its own origin, never
`*`. No `Access-Control-Allow-Credentials`: the service reads no cookie, and the `Authorization`
header a frontend sends needs none. Flask-CORS was not used: it answers a preflight with the
route's status (a 405 here), a refused preflight with no error at all, and leaves out
`Vary: Origin` when one origin is configured, though the answer still varies with the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, request
from werkzeug.exceptions import MethodNotAllowed

from proxy.errors import OriginNotAllowed

API_PREFIX = "/api/"
# `Accept` is safelisted only while short and plain: one choosing CSV among many ranges is not.
ALLOWED_HEADERS = ("Accept", "Authorization", "Content-Type", "If-None-Match", "X-Request-Id")
EXPOSED_HEADERS = ("X-Request-Id", "ETag", "Retry-After", "X-Cache")
# How long a browser may reuse a preflight's answer before asking again.
MAX_AGE_SECS = 600


class CorsPolicy:
    """Which origins may call the API routes from a browser, and the headers that tell it so."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(origins)

    def preflight(self) -> Response | None:
        """Answer a preflight of an API route: 204 for a listed origin, else a JSON 403."""
        methods = _preflighted_methods()
        if methods is None:
            return None  # not a preflight of an API route: routed as any other request
        if request.headers["Origin"] not in self.origins:
            raise OriginNotAllowed("This origin may not call the API from a browser.")
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(methods))
        response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
        response.headers["Access-Control-Max-Age"] = str(MAX_AGE_SECS)
        return response

    def decorate(self, response: Response) -> Response:
        """Put the CORS headers on every answer of an API route, errors included."""
        if not request.path.startswith(API_PREFIX):
            return response
        response.vary.add("Origin")  # a cache must not hand one origin's answer to another
        origin = request.headers.get("Origin")
        if origin in self.origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            if response.status_code != 204:
                response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
        return response


def _preflighted_methods() -> frozenset[str] | None:
    """The route's methods when this is a preflight asking for one of them, else None."""
    asked = request.headers.get("Access-Control-Request-Method")
    routed = request.routing_exception
    if request.method != "OPTIONS" or not asked or "Origin" not in request.headers:
        return None
    if not request.path.startswith(API_PREFIX) or not isinstance(routed, MethodNotAllowed):
        return None
    methods = frozenset(routed.valid_methods or ()) - {"HEAD"}
    return methods if asked in methods else None


def register_cors(app: Flask, origins: Iterable[str]) -> None:
    """Answer the API routes' preflights and mark their answers for the listed origins."""
    policy = CorsPolicy(origins)
    app.before_request(policy.preflight)
    app.after_request(policy.decorate)
