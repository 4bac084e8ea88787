"""Request bodies through the real gunicorn process, on raw sockets: a chunked body is read whole
or refused, never cut at the limit and answered as if it were the whole (the app's own rule, so
it holds without a front server too)."""

from __future__ import annotations

import socket

import orjson
import pytest

from proxy.settings import Settings
from tests.support.served import ROUTE, Service
from tests.support.tenants import SPAN

MAX_BODY_BYTES = Settings().max_body_bytes
QUERY = orjson.dumps({"interval": SPAN, "granularity": "all", "aggregations": [{"type": "count"}]})


def _padded(size: int) -> bytes:
    """The query followed by JSON whitespace up to `size` bytes: valid whatever its length."""
    return QUERY + b" " * (size - len(QUERY))


def _chunked(body: bytes, chunk: int = 4096) -> bytes:
    parts = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


BODIES: list[tuple[str, bytes, int, str | None]] = [
    ("small", _chunked(QUERY), 200, None),
    ("exactly_the_limit", _chunked(_padded(MAX_BODY_BYTES)), 200, None),
    # The finding: its first 65,536 bytes are a valid query, and it used to be answered 200.
    ("one_chunk_past_the_limit", _chunked(_padded(MAX_BODY_BYTES + 280)), 413, "request_entity_too_large"),
    ("far_past_the_limit", _chunked(_padded(4 * MAX_BODY_BYTES)), 413, "request_entity_too_large"),
    ("bad_chunk_size", b"zz\r\n" + QUERY + b"\r\n0\r\n\r\n", 400, "invalid_request"),
    ("chunk_longer_than_its_size", b"4\r\n" + QUERY + b"\r\n0\r\n\r\n", 400, "invalid_request"),
]
# The caller stops sending mid-body and half-closes its side.
CUT = _chunked(QUERY)[:-5]


def _exchange(
    service: Service, organization: str, chunked_body: bytes, half_close: bool = False
) -> tuple[int, dict[bytes, bytes], bytes]:
    """POST a chunked body on a raw socket and read the status, headers and body (a whole body is
    not half-closed after: the service would take that for a caller who hung up)."""
    head = (
        f"POST {ROUTE.format(organization)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: Token {service.tokens[organization]}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nX-Request-Id: chunked-1\r\n\r\n"
    ).encode()
    port = int(service.base_url.rsplit(":", 1)[1])
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        try:
            sock.sendall(head + chunked_body)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            while part := sock.recv(65536):
                answer += part
        except (ConnectionResetError, BrokenPipeError):
            pass  # a server that stops reading a refused body may reset: its answer came first
    header_block, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = header_block.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines)
    return int(status_line.split(b" ")[1]), headers, body


@pytest.mark.parametrize(
    ("chunked_body", "status", "code"),
    [row[1:] for row in BODIES],
    ids=[row[0] for row in BODIES],
)
def test_a_chunked_body_is_read_whole_or_refused_in_the_json_shape(
    embedded_hardened: Service, chunked_body: bytes, status: int, code: str | None
) -> None:
    organization = next(iter(embedded_hardened.tokens))
    got, headers, body = _exchange(embedded_hardened, organization, chunked_body)
    print(f"chunked {len(chunked_body)} bytes → {got}")
    assert got == status, body[:300]
    assert headers[b"x-request-id"] == b"chunked-1"
    assert headers[b"content-type"].startswith(b"application/json")
    assert orjson.loads(body).get("code") == code


def test_a_chunked_body_cut_short_is_a_400(embedded_hardened: Service) -> None:
    got, headers, body = _exchange(
        embedded_hardened, next(iter(embedded_hardened.tokens)), CUT, half_close=True
    )
    assert (got, orjson.loads(body)["code"], headers[b"x-request-id"]) == (
        400,
        "invalid_request",
        b"chunked-1",
    )
