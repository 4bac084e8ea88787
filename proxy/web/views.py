"""The HTTP endpoints: each reads the Flask request once into a Call, asks the service, answers.

Errors are raised, never rendered here: proxy/web/errors.py turns them into the JSON shape.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import orjson
from flask import Response, request

from proxy.errors import NotReady
from proxy.runtime.disconnect import client_probe
from proxy.runtime.metrics import exposition
from proxy.service.call import Call, Record
from proxy.service.reporting import ReportingService
from proxy.settings import Settings
from proxy.web.meta import meta_document
from proxy.web.observe import REQUEST_ID, current_record
from proxy.web.openapi import openapi_document
from proxy.web.responses import encoded_json, json_response

ROUTE = "/api/reporting/v1/orgs/<organization_id>/visitor_sessions"


def _call(organization_id: str, record: Record) -> Call:
    """The request as the service sees it: who calls for which organization, and when."""
    authorization = request.headers.get("Authorization")
    return Call(organization_id, authorization, record.request_id, record.arrived)


class Views:
    """The endpoints of one app, with the documents they serve encoded once."""

    def __init__(self, service: ReportingService, settings: Settings) -> None:
        self.service = service
        self.meta_body = orjson.dumps(meta_document(settings))
        self.openapi_body = orjson.dumps(openapi_document(REQUEST_ID.pattern))

    def visitor_sessions(self, organization_id: str) -> Response:
        """`POST .../visitor_sessions`: the report, or with `?explain=true` the backend query."""
        record = current_record()
        call = replace(
            _call(organization_id, record),
            is_json=request.is_json,
            body=partial(request.get_data, cache=False),
            explain=request.args.get("explain") == "true",
            client_gone=client_probe(request.environ),
        )
        return encoded_json(self.service.visitor_sessions(call, record).body)

    def visitor_sessions_meta(self, organization_id: str) -> Response:
        """`GET .../visitor_sessions/meta`: the vocabulary and limits, for a caller of the organization."""
        record = current_record()
        self.service.check_access(_call(organization_id, record), record)
        return encoded_json(self.meta_body)

    def healthz(self) -> Response:
        """The process is up."""
        return json_response({"status": "ok"})

    def readyz(self) -> Response:
        """The backend answers queries (503 `not_ready` while it does not)."""
        if not self.service.backend.ready():
            raise NotReady("The backend is not ready.")
        return json_response({"status": "ready", "backend": self.service.backend.name})

    def openapi(self) -> Response:
        """`GET /openapi.json`: the contract."""
        return encoded_json(self.openapi_body)

    def metrics(self) -> Response:
        """`GET /metrics`: Prometheus text, summed across workers."""
        body, content_type = exposition()
        return Response(body, content_type=content_type)
