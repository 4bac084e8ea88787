"""The baseline of goal 4: a bare Flask app that forwards one fixed body to the stub broker.

No auth, no validation, no translation, no remap: only what any proxy must do (receive the
request, one keep-alive POST upstream per request with a session per thread, return the bytes).

    gunicorn 'bench.forwarder:create_app()'   with BENCH_STUB_URL and BENCH_STUB_QUERY (a file)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import requests
from flask import Flask, Response, request

from proxy.app import ROUTE


def create_app() -> Flask:
    upstream = os.environ["BENCH_STUB_URL"].rstrip("/") + "/druid/v2/"
    query = Path(os.environ["BENCH_STUB_QUERY"]).read_bytes()
    local = threading.local()
    app = Flask("forwarder")

    def forward(organization_id: str) -> Response:
        request.get_data()
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.trust_env = False  # configured exactly like the service's broker client
        answer = session.post(upstream, data=query, headers={"Content-Type": "application/json"}, timeout=(2, 30))
        return Response(answer.content, status=answer.status_code, mimetype="application/json")

    app.add_url_rule(ROUTE, "forward", forward, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", lambda: "ok")
    return app
