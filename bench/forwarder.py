"""The baseline of goals 1 and 4: a bare Flask app that forwards each request body to a broker.

No auth, no validation, no translation, no remap: only what any proxy must do (receive the
request, one keep-alive POST upstream per request through a thread-safe connection pool, the
same urllib3 pool the service's broker client uses, and return the bytes). Sent a native query,
it is the cheapest Python hop in front of Druid under the same gunicorn.

    gunicorn 'bench.forwarder:create_app()'   with BENCH_UPSTREAM_URL (the broker, or a stub)
"""

from __future__ import annotations

import os

import urllib3
from flask import Flask, Response, request

from proxy.web.app import ROUTE


def create_app() -> Flask:
    upstream = urllib3.connection_from_url(
        os.environ["BENCH_UPSTREAM_URL"],
        maxsize=16,
        retries=False,
        timeout=urllib3.Timeout(connect=2, read=300),
    )
    app = Flask("forwarder")

    def forward(organization_id: str) -> Response:
        answer = upstream.request(
            "POST", "/druid/v2/", body=request.get_data(), headers={"Content-Type": "application/json"}
        )
        return Response(answer.data, status=answer.status, mimetype="application/json")

    app.add_url_rule(ROUTE, "forward", forward, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", lambda: "ok")
    return app
