"""The front server's nginx configuration, rendered from the settings and the serve options."""

from __future__ import annotations

import ipaddress
import json
import os
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from proxy.settings import Settings
from proxy.web.cors import API_PREFIX, EXPOSED_HEADERS

# Headroom over the service's own deadline: the service answers 504 itself; the front's read
# timeout only catches a gunicorn that stopped answering altogether.
UPSTREAM_MARGIN_SECS = 10
# One worker's connections: a client uses one, a proxied request two; the rest is for files.
_FDS_PER_CONNECTION = 2
_RESERVED_FDS = 64
MAX_WORKER_CONNECTIONS = 8192


@dataclass(frozen=True)
class FrontError:
    """An answer nginx gives itself: the status sent, and the JSON error shape's code and detail."""

    status: int
    code: str
    detail: str


# nginx status (as nginx reaches its error page) → what the client gets. 494 is nginx's own
# "header too large"; a transfer coding or HTTP version it cannot read is the client's error.
FRONT_ERRORS: dict[int, FrontError] = {
    400: FrontError(400, "bad_request", "The request is not valid HTTP/1.1."),
    404: FrontError(404, "not_found", "No such path."),
    405: FrontError(405, "method_not_allowed", "The method is not allowed."),
    413: FrontError(413, "request_entity_too_large", "The body is over {max_body_bytes} bytes."),
    414: FrontError(414, "request_uri_too_large", "The request line is too long."),
    494: FrontError(431, "request_header_fields_too_large", "A header line is too long."),
    500: FrontError(500, "internal_error", "Internal error."),
    501: FrontError(400, "bad_request", "The transfer coding is not supported."),
    502: FrontError(502, "bad_gateway", "The service is not answering; try again."),
    504: FrontError(504, "gateway_timeout", "The service did not answer in time."),
    505: FrontError(400, "bad_request", "The HTTP version is not supported."),
}
_ERROR_PREFIX = "/_front/"


@dataclass(frozen=True)
class FrontConfig:
    """Everything the nginx configuration is rendered from."""

    host: str
    port: int
    run_dir: Path
    gunicorn_socket: Path
    header_timeout_secs: int
    body_timeout_secs: int
    max_body_bytes: int
    upstream_timeout_secs: int
    worker_connections: int
    worker_processes: int = 1
    user: str | None = None
    send_timeout_secs: int = 30
    keepalive_timeout_secs: int = 15
    backlog: int = 4096
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, host: str, port: int, run_dir: Path) -> FrontConfig:
        """The front for these settings, listening on `host:port`, its files in `run_dir`."""
        return cls(
            host=host,
            port=port,
            run_dir=run_dir,
            gunicorn_socket=run_dir / "gunicorn.sock",
            header_timeout_secs=settings.client_header_timeout_secs,
            body_timeout_secs=settings.client_body_timeout_secs,
            max_body_bytes=settings.max_body_bytes,
            upstream_timeout_secs=int(settings.request_timeout_secs) + UPSTREAM_MARGIN_SECS,
            worker_connections=worker_connections(open_files_limit()),
            user=_superuser_directive_user(),
            cors_origins=settings.cors_origins,
        )

    @property
    def nofile(self) -> int:
        """The open-files limit each nginx worker asks for."""
        return self.worker_connections * _FDS_PER_CONNECTION + _RESERVED_FDS


def render(config: FrontConfig) -> str:
    """The nginx.conf text for `config`."""
    template = resources.files("proxyctl.front").joinpath("nginx.conf.template").read_text()
    return _Template(template).substitute(
        worker_processes=config.worker_processes,
        nofile=config.nofile,
        user_directive=f"user {config.user};" if config.user else "",
        run_dir=config.run_dir,
        shutdown_timeout_secs=config.upstream_timeout_secs,
        worker_connections=config.worker_connections,
        header_timeout_secs=config.header_timeout_secs,
        body_timeout_secs=config.body_timeout_secs,
        send_timeout_secs=config.send_timeout_secs,
        keepalive_timeout_secs=config.keepalive_timeout_secs,
        max_body_bytes=config.max_body_bytes,
        gunicorn_socket=config.gunicorn_socket,
        listen=listen_address(config.host, config.port),
        backlog=config.backlog,
        upstream_timeout_secs=config.upstream_timeout_secs,
        error_pages=_error_pages(),
        api_prefix=API_PREFIX,
        cors_origins=_cors_origins(config.cors_origins),
        exposed_headers=", ".join(EXPOSED_HEADERS),
        error_locations=_error_locations(config),
    )


class _Template(string.Template):
    # nginx's own variables are `$name`, so the placeholders take a delimiter nginx never uses.
    delimiter = "%%"


def listen_address(host: str, port: int) -> str:
    """nginx's `listen` spelling of host:port (IPv6 in brackets); never a wildcard unless asked."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return f"{host}:{port}"
    return f"[{literal}]:{port}" if literal.version == 6 else f"{literal}:{port}"


def open_files_limit() -> int:
    """This process's soft limit on open files (nginx's workers inherit it, and may raise it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return hard if hard != resource.RLIM_INFINITY else soft


def worker_connections(files_limit: int) -> int:
    """As many connections as the open-files limit allows a worker, up to a cap."""
    usable = (files_limit - _RESERVED_FDS) // _FDS_PER_CONNECTION
    return max(256, min(MAX_WORKER_CONNECTIONS, usable))


def _superuser_directive_user() -> str | None:
    # Started as root, nginx would run its workers as `nobody`, who can open neither the
    # gunicorn socket nor the run directory (both 0700): they run as the serving user instead.
    if os.geteuid() != 0:
        return None
    import grp
    import pwd

    return f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


def _error_pages() -> str:
    lines = [
        f"        error_page {nginx_status} {_redirect(nginx_status, error)};"
        for nginx_status, error in FRONT_ERRORS.items()
    ]
    return "\n".join(lines)


def _redirect(nginx_status: int, error: FrontError) -> str:
    # A URI, not a named location: nginx cannot redirect to a named location from a request
    # line it could not parse (it answers 500 instead).
    changed = f"={error.status} " if error.status != nginx_status else ""
    return f"{changed}{_ERROR_PREFIX}{nginx_status}"


def _cors_origins(origins: tuple[str, ...]) -> str:
    # Settings admit only scheme://host[:port] spelled with [A-Za-z0-9.:[\]-]: nothing to quote.
    return "\n".join(f'        "1 {origin}" "{origin}";' for origin in origins)


def _error_locations(config: FrontConfig) -> str:
    return "\n".join(_error_location(status, error, config) for status, error in FRONT_ERRORS.items())


def _error_location(nginx_status: int, error: FrontError, config: FrontConfig) -> str:
    detail = error.detail.format(max_body_bytes=config.max_body_bytes)
    body = json.dumps({"detail": detail, "code": error.code}).replace("'", "\\'")
    return (
        f"        location = {_ERROR_PREFIX}{nginx_status} {{\n"
        "            internal;\n"
        "            default_type application/json;\n"
        "            add_header X-Request-Id $front_request_id always;\n"
        "            add_header Access-Control-Allow-Origin $front_cors_origin always;\n"
        "            add_header Access-Control-Expose-Headers $front_cors_exposed always;\n"
        "            add_header Vary $front_vary always;\n"
        f"            return {error.status} '{body}\\n';\n"
        "        }"
    )
