"""The Flask application factory: it wires settings, the service, the routes, the error handlers
and the per-request observation hooks, and does nothing else.

Served with `gunicorn 'proxy.web.app:create_app()'`; tests pass their own settings.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response

from proxy.backends.base import Backend
from proxy.runtime.logs import configure_logging
from proxy.runtime.metrics import start_backend
from proxy.service.reporting import ReportingService
from proxy.settings import Settings, load_settings
from proxy.web.console import register_console
from proxy.web.cors import register_cors
from proxy.web.errors import register_error_handlers
from proxy.web.observe import begin_request, finish_request
from proxy.web.views import ROUTE, Views

__all__ = ["ROUTE", "create_app"]


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> Flask:
    """Build the service; settings default to the `PROXY_*` environment."""
    settings = settings or load_settings()
    configure_logging()
    service = ReportingService(settings, backend)
    app = Flask("proxy")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["reporting"] = service
    start_backend(service.backend.name)
    register_error_handlers(app)
    app.before_request(begin_request)
    app.after_request(finish_request)
    register_cors(app, settings.cors_origins)
    for rule, view, method in _routes(Views(service, settings)):
        # The endpoint is the view's name (`visitor_sessions`, `healthz`, ...). No automatic
        # OPTIONS (Flask's is an empty text/html 200): OPTIONS is a 405 in the JSON shape, with Allow.
        app.add_url_rule(rule, view_func=view, methods=[method], provide_automatic_options=False)
    if settings.console:
        register_console(app)
    return app


def _routes(views: Views) -> tuple[tuple[str, Callable[..., Response], str], ...]:
    return (
        (ROUTE, views.visitor_sessions, "POST"),
        (ROUTE + "/meta", views.visitor_sessions_meta, "GET"),
        ("/healthz", views.healthz, "GET"),
        ("/readyz", views.readyz, "GET"),
        ("/openapi.json", views.openapi, "GET"),
        ("/metrics", views.metrics, "GET"),
    )
