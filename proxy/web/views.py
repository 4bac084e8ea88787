"""The HTTP endpoints: each reads the Flask request once into a Call, asks the service, answers.

Errors are raised, never rendered here: proxy/web/errors.py turns them into the JSON shape.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import IO

import orjson
from flask import Response, request
from gunicorn.http.errors import ParseException  # type: ignore[import-untyped]
from werkzeug.exceptions import RequestEntityTooLarge

from proxy.errors import BadRequest, NotReady
from proxy.runtime.disconnect import client_probe
from proxy.runtime.metrics import exposition
from proxy.service.call import Answer, Call, Record
from proxy.service.reporting import ReportingService
from proxy.service.representation import JSON, Representation, answer_condition, representation_tag
from proxy.settings import Settings
from proxy.web.meta import meta_document
from proxy.web.observe import current_record
from proxy.web.openapi import EXPLANATION_TYPE, openapi_document
from proxy.web.representations import negotiated, report_response
from proxy.web.responses import encoded_json, json_response

ROUTE = "/api/reporting/v1/orgs/<organization_id>/visitor_sessions"
_READ_BYTES = 64 * 1024


def read_body(max_bytes: int) -> bytes:
    """The whole request body: 413 past `max_bytes` (declared or sent), 400 if it is malformed.

    The server's stream is read directly, never werkzeug's wrapper of it, which for a chunked
    body stops at the limit and returns what it has: a cut body must never pass as the whole.
    """
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise RequestEntityTooLarge()
    if declared is None and not request.environ.get("wsgi.input_terminated"):
        return b""  # a server that cannot end an unsized body: read none (werkzeug's rule)
    stream: IO[bytes] = request.environ["wsgi.input"]
    body = _read_upto(stream, max_bytes + 1 if declared is None else declared)
    if len(body) > max_bytes:
        raise RequestEntityTooLarge()
    if declared is not None and len(body) < declared:
        raise BadRequest("The request body ended before its Content-Length.")
    return body


def _read_upto(stream: IO[bytes], limit: int) -> bytes:
    """At most `limit` bytes, fewer only at the end of the body; a malformed one is a 400."""
    parts: list[bytes] = []
    left = limit
    try:
        while left > 0 and (part := stream.read(min(left, _READ_BYTES))):
            parts.append(part)
            left -= len(part)
    except (ParseException, OSError) as exc:
        # gunicorn's chunked reader: a bad chunk size or terminator, or the body cut short.
        raise BadRequest("The request body is malformed or cut short.") from exc
    return b"".join(parts)


# The query string's spelling of a boolean, as OpenAPI serializes one: nothing else is a guess.
_BOOLEANS = {"true": True, "false": False}


def explain_flag(values: list[str]) -> bool:
    """`?explain`: absent, `true` or `false`; any other value, or more than one, is a 400."""
    if not values:
        return False
    if len(values) > 1 or values[0] not in _BOOLEANS:
        raise BadRequest("explain is true or false, given once.", {"explain": ["Must be true or false."]})
    return _BOOLEANS[values[0]]


def _call(organization_id: str, record: Record) -> Call:
    """The request as the service sees it: who calls for which organization, and when."""
    authorization = request.headers.get("Authorization")
    return Call(organization_id, authorization, record.request_id, record.arrived)


def _explanation(answer: Answer) -> Response:
    """An explanation: a media type of its own, so an `application/json` answer is always a Result."""
    response = encoded_json(answer.body)
    response.mimetype = EXPLANATION_TYPE
    return response


def _report(answer: Answer, representation: Representation) -> Response:
    """The answer in its form, or 304 when the caller's copy is current, with the cache's headers."""
    response = Response(status=304) if answer.not_modified else report_response(answer.body, representation)
    response.vary.add("Accept")
    if answer.cache:
        response.headers["X-Cache"] = answer.cache
    etag = representation_tag(answer.etag, representation)
    if etag:
        response.headers["ETag"] = etag
        # Any cache between caller and service must ask again each time: the data may change.
        response.headers["Cache-Control"] = "private, no-cache"
    return response


class Views:
    """The endpoints of one app, with the documents they serve encoded once."""

    def __init__(self, service: ReportingService, settings: Settings) -> None:
        self.service = service
        self.max_body_bytes = settings.max_body_bytes
        self.meta_body = orjson.dumps(meta_document(settings))
        self.openapi_body = orjson.dumps(openapi_document(settings))

    def visitor_sessions(self, organization_id: str) -> Response:
        """`POST .../visitor_sessions`: the report, or with `?explain=true` the backend query."""
        record = current_record()
        try:
            explain = explain_flag(request.args.getlist("explain"))
        except BadRequest:
            # Who may ask comes first: a stranger learns nothing from a bad query string.
            self.service.refuse_invalid(_call(organization_id, record), record)
            raise
        # An explanation has one form whatever `Accept` says, as before CSV existed.
        representation = JSON if explain else negotiated(request.accept_mimetypes)
        record.representation = None if explain else representation.media_type
        call = replace(
            _call(organization_id, record),
            is_json=request.is_json,
            body=partial(read_body, self.max_body_bytes),
            explain=explain,
            client_gone=client_probe(request.environ),
            if_none_match=answer_condition(request.headers.get("If-None-Match"), representation),
            representation=representation,
        )
        answer = self.service.visitor_sessions(call, record)
        return _explanation(answer) if explain else _report(answer, representation)

    def visitor_sessions_meta(self, organization_id: str) -> Response:
        """`GET .../visitor_sessions/meta`: the vocabulary and limits, for a caller of the organization."""
        record = current_record()
        self.service.check_access(_call(organization_id, record), record)
        return encoded_json(self.meta_body)

    def healthz(self) -> Response:
        """The process is up."""
        return json_response({"status": "ok"})

    def readyz(self) -> Response:
        """The backend answers queries (503 `not_ready` while it does not), and where the limits
        are counted: `local`, or the shared store `ok` or `unavailable` (503 if it fails closed);
        and whether the access store answers (`ok`, `unavailable`: still 200, see several-hosts.md)."""
        if not self.service.backend.ready():
            raise NotReady("The backend is not ready.")
        limits = self.service.limiter.readiness()
        if limits == "unavailable" and self.service.settings.limits_on_store_error == "closed":
            raise NotReady("The shared limits store does not answer.")
        access = self.service.store.readiness()
        body = {"status": "ready", "backend": self.service.backend.name, "limits": limits, "access": access}
        return json_response(body)

    def openapi(self) -> Response:
        """`GET /openapi.json`: the contract."""
        return encoded_json(self.openapi_body)

    def metrics(self) -> Response:
        """`GET /metrics`: Prometheus text, summed across workers."""
        body, content_type = exposition()
        return Response(body, content_type=content_type)
