"""The Flask application factory: routes, request ids and the one JSON error shape.

Served with `gunicorn 'proxy.web.app:create_app()'`; tests pass their own settings.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from functools import lru_cache
from typing import Any

import orjson
from flask import Flask, Response, g, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from proxy.access.authenticate import Authenticator, authorize
from proxy.access.principal import canonical_organization_id
from proxy.access.store import AccessStore
from proxy.backends.base import Backend
from proxy.errors import BadRequest, ProxyError, UnsupportedMediaType
from proxy.query.plan import BackendRow, ResultPlan, plan_result, render
from proxy.runtime.disconnect import client_probe
from proxy.runtime.gc_pause import gc_paused
from proxy.runtime.limits import Limiter, Limits
from proxy.runtime.logs import configure_logging, log_audit, log_request
from proxy.runtime.metrics import backend_query, exposition, observe_request, start_backend
from proxy.settings import Settings, load_settings
from proxy.web.meta import meta_document
from proxy.web.openapi import openapi_document
from schemas.model import Query
from schemas.request import QueryLimits, QuerySchema

log = logging.getLogger("proxy.access_log")

# A caller's id is echoed and logged, so one shaped like an API key (`rpk_...`) is replaced.
_REQUEST_ID = re.compile(r"^(?!rpk_)[A-Za-z0-9._-]{1,64}$")
ROUTE = "/api/reporting/v1/orgs/<organization_id>/visitor_sessions"
# Dashboards send the same bodies again and again (every refresh, every viewer), and a
# validated Query is immutable and holds no organization: small bodies are validated once.
_CACHED_BODY_BYTES = 4096
_CACHED_BODIES = 512
# Metric labels take only these methods, so odd request methods cannot grow the series.
_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response encoded with orjson."""
    return Response(orjson.dumps(body), status=status, headers=headers, mimetype="application/json")


def build_backend(settings: Settings) -> Backend:
    """The engine the settings ask for."""
    if settings.backend == "druid":
        from proxy.backends.druid.backend import DruidBackend

        return DruidBackend(settings)
    from proxy.backends.embedded.backend import EmbeddedBackend

    return EmbeddedBackend(settings)


def _limits(settings: Settings) -> QueryLimits:
    return QueryLimits(
        max_interval_days=settings.max_interval_days,
        max_group_by=settings.max_group_by,
        max_filter_depth=settings.max_filter_depth,
        max_filter_nodes=settings.max_filter_nodes,
        max_filter_values=settings.max_filter_values,
        max_result_rows=settings.max_result_rows,
    )


class ReportingService:
    """What one request needs, built once per worker: auth, schema, backend."""

    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = AccessStore(settings.access_db_path)
        self.authenticator = Authenticator(settings, self.store)
        self.schema = QuerySchema(_limits(settings))
        self._cached_query = lru_cache(maxsize=_CACHED_BODIES)(self._validated_query)
        self.backend = backend or build_backend(settings)
        self.limiter = Limiter(settings.limits_path, Limits.from_settings(settings))
        self.meta_body = orjson.dumps(meta_document(settings))

    def load_query(self) -> Query:
        if not request.is_json:
            raise UnsupportedMediaType("Send the query as application/json.")
        body = request.get_data(cache=False)
        # A failed validation raises, so only valid bodies are ever cached.
        return self._cached_query(body) if len(body) <= _CACHED_BODY_BYTES else self._validated_query(body)

    def _validated_query(self, body: bytes) -> Query:
        try:
            payload = orjson.loads(body)
        except (orjson.JSONDecodeError, RecursionError) as exc:
            raise BadRequest("The body is not valid JSON.") from exc
        if not isinstance(payload, dict):
            raise BadRequest("The body must be a JSON object.")
        try:
            query: Query = self.schema.load(payload)
            return query
        except ValidationError as exc:
            errors = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
            raise BadRequest("The query is invalid.", errors) from exc

    def authorized_organization(self, organization_id: str) -> str:
        """Authenticate the caller and check its access; the canonical organization id."""
        principal = self.authenticator.authenticate(request.headers.get("Authorization"))
        g.principal = principal.name
        authorize(principal, organization_id, self.store)
        g.organization = canonical_organization_id(organization_id)
        return str(g.organization)

    def visitor_sessions(self, organization_id: str) -> Response:
        organization_id = self.authorized_organization(organization_id)
        explain = request.args.get("explain") == "true"
        log_audit(g.request_id, g.principal, organization_id, explain)
        query = self.load_query()
        plan = plan_result(query, self.settings.max_buckets, self.settings.max_result_rows)
        if explain:
            return self._explain(plan, organization_id)
        # The one pause of the collector, over the whole answer: the decoded rows and the
        # rendered ones are gone by the time it runs again, so it never walks them. The plan
        # bounds the rows: a grouped answer has at most `row_limit`, a series one per bucket.
        with gc_paused(plan.row_limit if plan.grouped else len(plan.bucket_starts_ms)):
            return self._answer(plan, organization_id)

    def _explain(self, plan: ResultPlan, organization_id: str) -> Response:
        # An explanation runs nothing on the backend, so it takes no concurrency slot.
        with self.limiter.admit(organization_id, g.principal, hold_slot=False):
            g.backend = self.backend.name
            explained = self.backend.explain(plan, organization_id, g.request_id)
        return json_response({"backend": self.backend.name, "query": explained})

    def _answer(self, plan: ResultPlan, organization_id: str) -> Response:
        with self.limiter.admit(organization_id, g.principal):
            g.backend = self.backend.name
            rows = self._execute(plan, organization_id)
        return json_response(render(plan, rows))

    def _execute(self, plan: ResultPlan, organization_id: str) -> list[BackendRow]:
        started = time.perf_counter()
        try:
            with backend_query(self.backend.name):
                gone = client_probe(request.environ)
                # The budget counts from the request's arrival: checks and planning spent some.
                budget = self.settings.request_timeout_secs - (started - g.started)
                return list(self.backend.execute(plan, organization_id, g.request_id, gone, budget))
        finally:
            g.backend_ms = (time.perf_counter() - started) * 1000

    def visitor_sessions_meta(self, organization_id: str) -> Response:
        self.authorized_organization(organization_id)
        return Response(self.meta_body, mimetype="application/json")


def _error_response(error: ProxyError) -> Response:
    g.error_code = error.code
    body: dict[str, Any] = {"detail": error.detail, "code": error.code}
    if error.errors:
        body["errors"] = error.errors
    return json_response(body, error.status, error.headers())


def _http_error_response(error: HTTPException) -> Response:
    code = g.error_code = re.sub(r"[^a-z]+", "_", (error.name or "error").lower()).strip("_")
    body = {"detail": error.description or error.name, "code": code}
    headers = {"Allow": ", ".join(error.valid_methods)} if getattr(error, "valid_methods", None) else {}  # type: ignore[attr-defined]
    return json_response(body, error.code or 500, headers)


def _register_errors(app: Flask) -> None:
    app.register_error_handler(ProxyError, _error_response)
    app.register_error_handler(HTTPException, _http_error_response)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unhandled error in request %s", g.get("request_id"))
        g.error_code = "internal_error"
        return json_response({"detail": "Internal error.", "code": "internal_error"}, 500)


def _register_request_ids(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        supplied = request.headers.get("X-Request-Id", "")
        g.request_id = supplied if _REQUEST_ID.match(supplied) else str(uuid.uuid4())
        g.started = time.perf_counter()

    @app.after_request
    def stamp(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        _observe(response.status_code)
        return response


def _observe(status: int) -> None:
    """The request's metrics and its one access-log line; never a header, query string or body."""
    route = request.url_rule.rule if request.url_rule else "unmatched"
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    code = g.get("error_code")
    observe_request(route, request.method if request.method in _METHODS else "other", status, code, seconds)
    backend, backend_ms = g.get("backend"), g.get("backend_ms")
    log_request(
        {
            "request_id": g.get("request_id"),
            "method": request.method,
            "route": route,
            "organization": g.get("organization") or (request.view_args or {}).get("organization_id"),
            "principal": g.get("principal"),
            "status": status,
            "error_code": code,
            "duration_ms": round(seconds * 1000, 3),
            "backend": backend,
            "backend_ms": None if backend_ms is None else round(backend_ms, 3),
            "druid_query_id": g.get("request_id") if backend == "druid" else None,
        }
    )


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> Flask:
    """Build the service; settings default to the `PROXY_*` environment."""
    settings = settings or load_settings()
    configure_logging()
    service = ReportingService(settings, backend)
    app = Flask("proxy")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["reporting"] = service
    start_backend(service.backend.name)
    _register_errors(app)
    _register_request_ids(app)
    app.add_url_rule(ROUTE, "visitor_sessions", service.visitor_sessions, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", lambda: json_response({"status": "ok"}))
    app.add_url_rule("/readyz", "readyz", lambda: _readiness(service))
    app.add_url_rule(ROUTE + "/meta", "visitor_sessions_meta", service.visitor_sessions_meta)
    spec = orjson.dumps(openapi_document(_REQUEST_ID.pattern))
    app.add_url_rule("/openapi.json", "openapi", lambda: Response(spec, mimetype="application/json"))
    app.add_url_rule("/metrics", "metrics", _metrics)
    return app


def _readiness(service: ReportingService) -> Response:
    if service.backend.ready():
        return json_response({"status": "ready", "backend": service.backend.name})
    body = {"detail": "The backend is not ready.", "code": "not_ready"}
    g.error_code = "not_ready"
    return json_response(body, 503, {"Retry-After": "5"})


def _metrics() -> Response:
    body, content_type = exposition()
    return Response(body, content_type=content_type)
