"""The query console (docs/console.md): static files in the package, served at `/console`.

Its Content-Security-Policy lets the page load and call nothing but this service, so neither
a vendored file nor a typed query can send the pasted key to another host.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, send_from_directory

CONSOLE_DIR = Path(__file__).parent / "console"
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def index() -> Response:
    """`GET /console`: the page."""
    return asset("index.html")


def asset(name: str) -> Response:
    """`GET /console/<name>`: one of the page's files; 404 for any other name."""
    response = send_from_directory(CONSOLE_DIR, name, max_age=300)
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def register_console(app: Flask) -> None:
    """Serve the console's page and files."""
    app.add_url_rule("/console", view_func=index, methods=["GET"], provide_automatic_options=False)
    app.add_url_rule(
        "/console/<path:name>", view_func=asset, methods=["GET"], provide_automatic_options=False
    )
