"""Notice a caller that hung up while its query runs, from the raw client socket.

gunicorn puts the connection's socket in `environ["gunicorn.socket"]`. Once the request body
has been read, a well-behaved HTTP/1.1 client sends nothing more until it has the answer, so
a readable socket whose peek returns no bytes means the peer closed (or reset) it. A client
that half-closes its side after sending (`shutdown(SHUT_WR)`) looks the same; HTTP clients
do not do that in practice.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

# Asked while a backend call is in flight: has the caller gone away?
ClientGone = Callable[[], bool]


def never_gone() -> bool:
    """The probe for callers we cannot watch (the test client, other servers)."""
    return False


def peer_closed(sock: socket.socket) -> bool:
    """Whether the peer has closed or reset the connection; never blocks, never consumes."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (ConnectionError, ValueError):
        return True  # reset by the peer, or already closed on our side
    except OSError:
        return False  # a transient error is no proof the caller left


def client_probe(environ: Mapping[str, Any]) -> ClientGone:
    """A probe for the WSGI request's caller: its socket under gunicorn, else `never_gone`."""
    sock = environ.get("gunicorn.socket")
    # A TLS socket cannot peek at the raw stream: such callers are not watched.
    if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
        return never_gone
    return lambda: peer_closed(sock)
