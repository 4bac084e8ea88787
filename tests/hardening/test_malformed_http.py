"""Requests that are not valid HTTP/1.1, sent on raw sockets to the real gunicorn process.

gunicorn refuses these itself, before the app runs: its answers are HTML with no X-Request-Id,
so the JSON error contract cannot hold for them (the fuzz runs keep to valid HTTP). What must
hold: never a 5xx, never a hang, and the workers keep serving.
"""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.contract import serving_problem, worker_pids
from tests.support.ids import ORG
from tests.support.served import ROUTE, Service

REPORT = ROUTE.format(ORG).encode()
MALFORMED: list[tuple[str, bytes]] = [
    ("lower_case_method", b"post " + REPORT + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("unknown_version", b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n"),
    ("header_without_colon", b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n"),
    ("space_in_header_name", b"GET /healthz HTTP/1.1\r\nHo st: x\r\n\r\n"),
    ("control_in_header_value", b"GET /healthz HTTP/1.1\r\nHost: x\x01y\r\n\r\n"),
    ("del_in_header_value", b"GET /healthz HTTP/1.1\r\nHost: x\x7fy\r\n\r\n"),
    ("obsolete_line_folding", b"GET /healthz HTTP/1.1\r\nHost: x\r\n y\r\n\r\n"),
    (
        "two_content_lengths",
        b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ),
    (
        "content_length_and_chunked",
        b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    ("negative_content_length", b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
    ("header_over_8k", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n"),
    ("request_line_over_4k", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    (
        "150_headers",
        b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n",
    ),
    ("nul_in_path", b"GET /heal\x00thz HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("raw_utf8_in_path", "GET /héalthz HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
    ("bare_line_feeds", b"GET /healthz HTTP/1.1\nHost: x\n\n"),
    (
        "bad_chunk_size",
        b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\nzz\r\n",
    ),
    (
        "gzip_transfer_encoding",
        b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    ),
    (
        "body_shorter_than_declared",
        b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{}",
    ),
    ("tls_hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40),
    ("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("only_a_request_line", b"GET /healthz HTTP/1.1\r\n"),
]


def exchange(service: Service, raw: bytes, timeout: float = 8.0) -> int | None:
    """Send raw bytes, half-close, and read the status of the answer (None: closed silently)."""
    port = int(service.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)  # an incomplete request ends here, rather than by a timeout
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    if not answer.startswith(b"HTTP/"):
        return None
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("raw", [raw for _, raw in MALFORMED], ids=[name for name, _ in MALFORMED])
def test_malformed_request_is_refused_without_a_5xx(embedded_hardened: Service, raw: bytes) -> None:
    status = exchange(embedded_hardened, raw)
    assert status is None or 400 <= status < 500


def test_random_bytes_never_get_a_5xx_and_the_workers_survive(embedded_hardened: Service) -> None:
    workers = worker_pids(embedded_hardened.pid)
    prefix = st.sampled_from(
        (b"", b"GET / HTTP/1.1\r\n", b"POST " + REPORT + b" HTTP/1.1\r\nContent-Length: 5\r\n")
    )

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(prefix, st.binary(max_size=300))
    def check(start: bytes, rest: bytes) -> None:
        status = exchange(embedded_hardened, start + rest)
        assert status is None or status < 500

    check()
    log = embedded_hardened.data_dir / "gunicorn.log"
    assert serving_problem(embedded_hardened.base_url, embedded_hardened.pid, workers, log) is None
