"""The baseline of goal 4: a bare Flask app that forwards one fixed body to the stub broker.

No auth, no validation, no translation, no remap: only what any proxy must do (receive the
request, one keep-alive POST upstream per request through a thread-safe connection pool, the
same urllib3 pool the service's broker client uses, and return the bytes).

    gunicorn 'bench.forwarder:create_app()'   with BENCH_STUB_URL and BENCH_STUB_QUERY (a file)
"""

from __future__ import annotations

import os
from pathlib import Path

import urllib3
from flask import Flask, Response, request

from proxy.app import ROUTE


def create_app() -> Flask:
    upstream = urllib3.connection_from_url(os.environ["BENCH_STUB_URL"], maxsize=16, retries=False,
                                           timeout=urllib3.Timeout(connect=2, read=30))
    query = Path(os.environ["BENCH_STUB_QUERY"]).read_bytes()
    app = Flask("forwarder")

    def forward(organization_id: str) -> Response:
        request.get_data()
        answer = upstream.request("POST", "/druid/v2/", body=query, headers={"Content-Type": "application/json"})
        return Response(answer.data, status=answer.status, mimetype="application/json")

    app.add_url_rule(ROUTE, "forward", forward, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", lambda: "ok")
    return app
