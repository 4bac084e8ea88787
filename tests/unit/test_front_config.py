"""The front server's nginx configuration: rendered from the settings, accepted by nginx itself."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from proxy.settings import load_settings
from proxyctl.front.config import FRONT_ERRORS, FrontConfig, listen_address, render, worker_connections
from proxyctl.front.supervise import nginx_binary, nginx_command


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1:8080"),
        ("0.0.0.0", "0.0.0.0:8080"),
        ("::1", "[::1]:8080"),
        ("::", "[::]:8080"),
        ("localhost", "localhost:8080"),
    ],
)
def test_listen_address(host: str, expected: str) -> None:
    assert listen_address(host, 8080) == expected


@pytest.mark.parametrize(("files", "connections"), [(100, 256), (1024, 480), (20_000, 8192)])
def test_worker_connections_fit_the_open_files_limit(files: int, connections: int) -> None:
    assert worker_connections(files) == connections


def _config(tmp_path: Path, host: str = "127.0.0.1", **env: str) -> FrontConfig:
    settings = load_settings({f"PROXY_{name.upper()}": value for name, value in env.items()})
    return FrontConfig.from_settings(settings, host, 18080, tmp_path)


@pytest.mark.parametrize(
    ("env", "directive"),
    [
        ({}, "client_header_timeout 10s;"),
        ({}, "client_body_timeout 10s;"),
        ({"client_header_timeout_secs": "3"}, "client_header_timeout 3s;"),
        ({"client_body_timeout_secs": "4"}, "client_body_timeout 4s;"),
        ({"max_body_bytes": "1000"}, "client_max_body_size 1000;"),
        ({"request_timeout_secs": "20"}, "proxy_read_timeout 30s;"),
        ({}, "listen 127.0.0.1:18080 "),
        ({}, 'proxy_set_header X-Request-Start "t=${msec}";'),
        ({}, "proxy_request_buffering on;"),
        ({}, "server_tokens off;"),
    ],
)
def test_the_settings_reach_the_config(tmp_path: Path, env: dict[str, str], directive: str) -> None:
    assert directive in render(_config(tmp_path, **env))


def test_every_front_answer_has_a_json_error_page(tmp_path: Path) -> None:
    text = render(_config(tmp_path))
    pages = set(map(int, re.findall(r"error_page (\d+) ", text)))
    bodies = re.findall(r"return (\d+) '(\{.*\})\\n';", text)
    assert pages == set(FRONT_ERRORS)
    assert sorted(int(status) for status, _ in bodies) == sorted(
        error.status for error in FRONT_ERRORS.values()
    )


def test_nothing_listens_on_a_wildcard_unless_asked(tmp_path: Path) -> None:
    assert re.findall(r"listen (\S+)", render(_config(tmp_path))) == ["127.0.0.1:18080"]


def test_the_fronts_refusals_carry_cors_headers_for_the_listed_origins_only(tmp_path: Path) -> None:
    text = render(_config(tmp_path, cors_origins="https://app.example.com http://127.0.0.1:3000"))
    listed = re.findall(r'"1 (\S+)" "(\S+)";', text)
    assert listed == [("https://app.example.com",) * 2, ("http://127.0.0.1:3000",) * 2]
    headers = text.count("add_header Access-Control-Allow-Origin $front_cors_origin always;")
    assert headers == len(FRONT_ERRORS)
    assert re.findall(r'"1 ', render(_config(tmp_path))) == []


@pytest.mark.parametrize(
    ("host", "origins"), [("127.0.0.1", ""), ("0.0.0.0", ""), ("::1", "https://a.example http://[::1]:3000")]
)
def test_nginx_accepts_the_rendered_config(tmp_path: Path, host: str, origins: str) -> None:
    config = _config(tmp_path, host, cors_origins=origins)
    path = tmp_path / "nginx.conf"
    path.write_text(render(config))
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "nginx" / name).mkdir(parents=True)
    checked = subprocess.run(
        [*nginx_command(nginx_binary(), path, tmp_path), "-t"], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stderr
