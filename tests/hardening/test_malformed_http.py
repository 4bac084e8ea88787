"""Requests that are not valid HTTP/1.1, sent on raw sockets to `reporting-proxy serve` as it
runs by default: nginx in front of gunicorn.

The front refuses these itself, in the service's JSON error shape with an X-Request-Id; what it
passes on is answered by the app, also in that shape. Never a 5xx, never HTML, never a hang;
and no credential a client sends, wherever it puts it, reaches a log line.
"""

from __future__ import annotations

import json
import secrets
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.contract import contract_problem, serving_problem, worker_pids
from tests.support.front import Answer, exchange
from tests.support.ids import ORG
from tests.support.served import ROUTE, Service

REPORT = ROUTE.format(ORG).encode()
OVER_THE_BODY_CAP = 64 * 1024 + 100
# name, raw bytes, the status expected (None: the connection is closed without an answer).
MALFORMED: list[tuple[str, bytes, int | None]] = [
    ("lower_case_method", b"post " + REPORT + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("unknown_version", b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    ("header_without_colon", b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400),
    ("space_in_header_name", b"GET /healthz HTTP/1.1\r\nHo st: x\r\n\r\n", 400),
    ("control_in_header_value", b"GET /healthz HTTP/1.1\r\nHost: x\x01y\r\n\r\n", 400),
    ("del_in_header_value", b"GET /healthz HTTP/1.1\r\nHost: x\x7fy\r\n\r\n", 400),
    ("obsolete_line_folding", b"GET /healthz HTTP/1.1\r\nHost: x\r\n y\r\n\r\n", 400),
    (
        "two_content_lengths",
        b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
    ),
    (
        "content_length_and_chunked",
        b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "negative_content_length",
        b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        400,
    ),
    ("header_over_4k", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 5000 + b"\r\n\r\n", 431),
    ("request_line_over_4k", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (
        "150_headers",
        b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n",
        400,
    ),
    ("nul_in_path", b"GET /heal\x00thz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("raw_utf8_in_path", "GET /héalthz HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 400),
    # nginx reads a bare LF as a line end (RFC 9112 allows it) and passes the request on.
    ("bare_line_feeds", b"GET /healthz HTTP/1.1\nHost: x\n\n", 200),
    (
        "bad_chunk_size",
        b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\nzz\r\n",
        400,
    ),
    (
        "chunked_body_over_the_cap",
        b"POST "
        + REPORT
        + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % OVER_THE_BODY_CAP
        + b"a" * OVER_THE_BODY_CAP
        + b"\r\n0\r\n\r\n",
        413,
    ),
    (
        "content_length_over_the_cap",
        b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % OVER_THE_BODY_CAP,
        413,
    ),
    (
        "gzip_transfer_encoding",
        b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        400,
    ),
    (
        "body_shorter_than_declared",
        b"POST " + REPORT + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{}",
        None,
    ),
    ("tls_hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
    ("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ("only_a_request_line", b"GET /healthz HTTP/1.1\r\n", None),
    ("trace", b"TRACE /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    ("options", b"OPTIONS " + REPORT + b" HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    ("the_fronts_error_page", b"GET /_front/502 HTTP/1.1\r\nHost: x\r\n\r\n", 404),
]


def _port(service: Service) -> int:
    return int(service.base_url.rsplit(":", 1)[1])


def _problem(answer: Answer) -> str | None:
    if answer.status is None:
        return None
    return contract_problem("GET", answer.status, answer.headers, answer.body)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(raw, status) for _, raw, status in MALFORMED],
    ids=[name for name, _, _ in MALFORMED],
)
def test_malformed_request_gets_a_json_refusal(
    embedded_fronted: Service, raw: bytes, expected: int | None
) -> None:
    answer = exchange(_port(embedded_fronted), raw)
    assert (answer.status, _problem(answer)) == (expected, None)


def test_options_names_the_allowed_method(embedded_fronted: Service) -> None:
    answer = exchange(_port(embedded_fronted), b"OPTIONS " + REPORT + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (answer.status, answer.headers.get("Allow")) == (405, "POST")


@pytest.mark.parametrize(
    ("supplied", "echoed"),
    [("dash-1", True), ("rpk_0123456789abcdef_x", False), ("a" * 65, False)],
    ids=["well_formed", "key_shaped", "too_long"],
)
def test_a_front_refusal_echoes_only_a_well_formed_request_id(
    embedded_fronted: Service, supplied: str, echoed: bool
) -> None:
    raw = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\nX-A: %s\r\n\r\n" % (
        supplied.encode(),
        b"a" * 5000,
    )
    answer = exchange(_port(embedded_fronted), raw)
    assert answer.status == 431
    assert (answer.headers["X-Request-Id"] == supplied) is echoed


def _credentials() -> dict[str, str]:
    """Fresh secrets of each shape a client may send, so none can be in the log by chance."""
    key = f"rpk_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
    jwt_like = f"eyJhbGciOiJIUzI1NiJ9.eyJ{secrets.token_urlsafe(24)}.{secrets.token_urlsafe(32)}"
    return {"key": key, "jwt": jwt_like, "plain": secrets.token_urlsafe(24)}


def _leaking_requests(secret: dict[str, str]) -> list[bytes]:
    key, jwt_like, plain = (secret[name].encode() for name in ("key", "jwt", "plain"))
    filler = b"a" * 5000
    return [
        b"Token " + key + b"\r\n\r\n",  # the request line is the credential (finding 9)
        b"GET /x?api_key=" + key + b"&token=" + plain + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /x?auth=Bearer%20" + jwt_like + b" HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /" + filler + b"?password=" + plain + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Token "
        + key
        + b"\r\nX-A: "
        + filler
        + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + jwt_like + b"\x01\r\n\r\n",
        b"POST "
        + REPORT
        + b"?key="
        + key
        + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Token "
        + key
        + b"\r\nContent-Length: %d\r\n\r\n" % OVER_THE_BODY_CAP,
        b"POST "
        + REPORT
        + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + jwt_like
        + b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]


def _flushed_log(service: Service) -> str:
    """The serve log once the lines of every earlier request are in (marker requests to both
    the front, whose lines a relay thread copies, and the app)."""
    marker = f"log-flush-{uuid.uuid4().hex[:12]}"
    exchange(
        _port(service), b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n\r\n" % marker.encode()
    )
    exchange(
        _port(service),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\nX-A: %s\r\n\r\n"
        % (marker.encode(), b"a" * 5000),
    )
    log = service.data_dir / "gunicorn.log"
    for _ in range(100):
        text = log.read_text(errors="replace")
        if text.count(marker) >= 2:
            return text
        exchange(_port(service), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    raise AssertionError(f"the marker {marker} never reached {log}")


def test_no_credential_reaches_a_log_line_and_every_line_is_json(embedded_fronted: Service) -> None:
    secret = _credentials()
    answers = [exchange(_port(embedded_fronted), raw) for raw in _leaking_requests(secret)]
    text = _flushed_log(embedded_fronted)
    lines = [line for line in text.splitlines() if line.strip()]
    leaked = [name for name, value in secret.items() if value in text or value[-20:] in text]
    not_json = [line[:120] for line in lines if not _is_json_object(line)]
    assert [answer.status for answer in answers] == [400, 404, 400, 414, 431, 400, 413, 400]
    assert (leaked, not_json) == ([], [])


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_random_bytes_never_get_a_5xx_or_html_and_the_workers_survive(embedded_fronted: Service) -> None:
    workers = worker_pids(embedded_fronted.pid)
    prefix = st.sampled_from(
        (b"", b"GET / HTTP/1.1\r\n", b"POST " + REPORT + b" HTTP/1.1\r\nContent-Length: 5\r\n")
    )

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(prefix, st.binary(max_size=300))
    def check(start: bytes, rest: bytes) -> None:
        assert _problem(exchange(_port(embedded_fronted), start + rest, quiet_secs=0.5)) is None

    check()
    log = embedded_fronted.data_dir / "gunicorn.log"
    assert serving_problem(embedded_fronted.base_url, embedded_fronted.pid, workers, log) is None
