"""What every answer must look like (docs/api.md "Errors"), and which gunicorn worker gave it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import requests

ERROR_KEYS = frozenset({"detail", "code", "errors"})


def contract_problem(method: str, status: int, headers: Mapping[str, str], body: bytes) -> str | None:
    """Why an answer breaks the contract, or None: no 5xx; a non-200 is the JSON error shape."""
    if status >= 500:
        return f"status {status}"
    if status == 200:
        return None
    if not headers.get("X-Request-Id"):
        return f"{status} without X-Request-Id"
    if method == "HEAD":
        return None  # no body by definition; the status and headers were checked
    return _error_body_problem(status, headers.get("Content-Type", ""), body)


def _error_body_problem(status: int, content_type: str, body: bytes) -> str | None:
    if not content_type.startswith("application/json"):
        return f"{status} with Content-Type {content_type!r}"
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"{status} with a body that is not JSON: {body[:80]!r}"
    if not isinstance(document, dict) or not document.keys() <= ERROR_KEYS:
        return f"{status} with body keys {sorted(document) if isinstance(document, dict) else type(document)}"
    if not isinstance(document.get("detail"), str) or not isinstance(document.get("code"), str):
        return f"{status} without a text detail and code: {body[:120]!r}"
    if "errors" in document and not isinstance(document["errors"], dict):
        return f"{status} with errors that are not an object"
    return None


def worker_pids(master: int) -> set[int]:
    """The live child processes of gunicorn's master (its workers), read from /proc."""
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == master and fields[0] != "Z":
            children.add(int(entry.name))
    return children


def _socket_inode(local_port: int, remote_port: int) -> str | None:
    """The inode of the server side of a loopback TCP connection, from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == remote_port:
            return inode if inode != "0" else None
    return None


def serving_worker(server_port: int, client_port: int, workers: set[int]) -> int | None:
    """Which worker holds the accepted socket of the client connection from `client_port`."""
    inode = _socket_inode(server_port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in workers:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(f"/proc/{pid}/fd/{descriptor}") == target:
                    return pid
            except OSError:
                continue
    return None


def serving_problem(base_url: str, master: int, workers: set[int], log: Path) -> str | None:
    """Why the service is not still serving as before: health, the same workers, no 500 logged."""
    if requests.get(f"{base_url}/healthz", timeout=10).status_code != 200:
        return "the health check failed"
    if worker_pids(master) != workers:
        return f"workers changed: {sorted(workers)} -> {sorted(worker_pids(master))}"
    unhandled = log.read_text(errors="replace").count("unhandled error")
    return f"{unhandled} unhandled errors in {log}" if unhandled else None
