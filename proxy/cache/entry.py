"""A stored answer: its body, the ETag callers see, and the validators that prove it still current.

A validator is one backend request and the tag its answer carried (Druid: a native query and
its ETag). An engine whose version is known before any query (the embedded one) has none.
The encoding starts with a marker, so a store written by another format reads as a miss.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

# A backend request (canonical bytes, as text) and the tag its answer carried.
Validator = tuple[str, str]

_MARKER = b"rpc-entry-1\n"
_LENGTH_BYTES = 4


@dataclass(frozen=True)
class Entry:
    """One answer as the store keeps it."""

    tag: str
    validators: tuple[Validator, ...]
    body: bytes


def encode(entry: Entry) -> bytes:
    """The bytes a store keeps: marker, header length, header (tag, validators), body."""
    header = orjson.dumps({"tag": entry.tag, "validators": entry.validators})
    return b"".join((_MARKER, len(header).to_bytes(_LENGTH_BYTES, "big"), header, entry.body))


def decode(stored: bytes | None) -> Entry | None:
    """The entry in a store's bytes; None when absent or in another format (a miss)."""
    if stored is None or not stored.startswith(_MARKER):
        return None
    start = len(_MARKER) + _LENGTH_BYTES
    end = start + int.from_bytes(stored[len(_MARKER) : start], "big")
    try:
        header = orjson.loads(stored[start:end])
        validators = tuple((str(request), str(tag)) for request, tag in header["validators"])
        return Entry(str(header["tag"]), validators, stored[end:])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
