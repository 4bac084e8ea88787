"""The caller-gone probe on real loopback sockets: open, closed, reset, pipelined, unwatchable."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator

import pytest

from proxy.runtime.disconnect import client_probe, never_gone, peer_closed


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server side, client side) of one TCP connection on loopback."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with server, client:
        yield server, client


def _close(client: socket.socket) -> None:
    client.close()


def _reset(client: socket.socket) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def _pipeline(client: socket.socket) -> None:
    client.sendall(b"GET /next HTTP/1.1\r\n")


def _nothing(client: socket.socket) -> None:
    pass


@pytest.mark.parametrize(
    ("caller_does", "gone"),
    [(_nothing, False), (_pipeline, False), (_close, True), (_reset, True)],
    ids=["waiting", "pipelined_bytes", "closed", "reset"],
)
def test_peer_closed(
    pair: tuple[socket.socket, socket.socket], caller_does: Callable[[socket.socket], None], gone: bool
) -> None:
    server, client = pair
    caller_does(client)
    assert peer_closed(server) is gone


def test_peeking_consumes_nothing(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    _pipeline(client)
    assert peer_closed(server) is False
    assert server.recv(100) == b"GET /next HTTP/1.1\r\n"


def test_probe_follows_the_gunicorn_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    probe = client_probe({"gunicorn.socket": server})
    assert probe() is False
    client.close()
    assert probe() is True


@pytest.mark.parametrize("environ", [{}, {"gunicorn.socket": object()}], ids=["no_socket", "not_a_socket"])
def test_unwatchable_callers_are_never_gone(environ: dict[str, object]) -> None:
    assert client_probe(environ) is never_gone
