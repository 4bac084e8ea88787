"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections posting bodies in turn."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from urllib.parse import urlsplit


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bool, bytes]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    body = await reader.readexactly(length)
    return status, close, body


async def _worker(
    host: str,
    port: int,
    raws: Sequence[bytes],
    first: int,
    until: float,
    counts: list[int],
    failures: list[bytes],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    turns = itertools.islice(itertools.cycle(raws), first, None)
    try:
        while time.perf_counter() < until:
            status, close, body = await _request(reader, writer, next(turns))
            counts[0 if status == 200 else 1] += 1
            if status != 200 and len(failures) < 3:
                failures.append(str(status).encode() + b" " + body[:200])
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def _run(
    url: str, bodies: Sequence[bytes], headers: dict[str, str], connections: int, secs: float
) -> tuple[int, int, float, list[bytes]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    raws = [
        (
            f"POST {parts.path}?{parts.query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        ).encode()
        + body
        for body in bodies
    ]
    counts: list[int] = [0, 0]
    failures: list[bytes] = []
    started = time.perf_counter()
    # Each connection starts elsewhere in the bodies, so no two send the same body in lockstep.
    spread = len(raws) // connections
    await asyncio.gather(
        *(
            _worker(host, port, raws, index * spread, started + secs, counts, failures)
            for index in range(connections)
        )
    )
    return counts[0], counts[1], time.perf_counter() - started, failures


def requests_per_sec(
    url: str, bodies: bytes | Sequence[bytes], headers: dict[str, str], connections: int, secs: float
) -> float:
    """Completed 200s per second over `secs`, the bodies sent in turn; raises unless all were 200s."""
    sent = [bodies] if isinstance(bodies, bytes) else bodies
    ok, failed, elapsed, failures = asyncio.run(_run(url, sent, headers, connections, secs))
    if failed:
        raise RuntimeError(f"{failed} of {ok + failed} requests to {url} did not answer 200: {failures}")
    return ok / elapsed
