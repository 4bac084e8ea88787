"""A bounded load generator, run as its own process: N client threads, each with its own
keep-alive session, send the integration query set round-robin until the time is up.

    python -m tests.soak.loadgen URL ORG TOKEN --clients 50 --seconds 60 --out results.json

Writes one record per request: [start offset s, latency s, status, error code or ""].
Loopback only; every request has a timeout; it stops by itself.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import requests

from tests.support.queries import QUERIES
from tests.support.served import ROUTE

Record = tuple[float, float, int, str]


def _client(number: int, args: argparse.Namespace, started: float, out: list[Record]) -> None:
    names = sorted(QUERIES)
    url = args.url + ROUTE.format(args.org)
    headers = {"Authorization": f"Token {args.token}", "Content-Type": "application/json"}
    bodies = [orjson.dumps(QUERIES[name]) for name in names]
    sent = 0
    with requests.Session() as session:
        while (begin := time.monotonic()) - started < args.seconds:
            body = bodies[(number + sent) % len(bodies)]
            sent += 1
            try:
                response = session.post(url, data=body, headers=headers, timeout=args.timeout)
                status, code = response.status_code, "" if response.ok else response.json().get("code", "")
            except requests.RequestException as exc:
                status, code = 0, type(exc).__name__
            out.append((begin - started, time.monotonic() - begin, status, code))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("org")
    parser.add_argument("token")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("load goes to loopback only")
    records: list[Record] = []
    started = time.monotonic()
    threads = [
        threading.Thread(target=_client, args=(n, args, started, records)) for n in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    args.out.write_bytes(
        orjson.dumps({"clients": args.clients, "wall_secs": time.monotonic() - started, "records": records})
    )


if __name__ == "__main__":
    main()
