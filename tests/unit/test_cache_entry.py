"""A stored answer's encoding: what goes in comes out; anything else is a miss."""

from __future__ import annotations

import pytest

from proxy.cache.entry import Entry, decode, encode

ENTRY = Entry('"tag"', (('{"queryType":"timeseries"}', "npHogR3ovjPzBzguCxEwByn3xPQ="),), b'{"data":[]}')


@pytest.mark.parametrize("entry", [ENTRY, Entry('"t"', (), b""), Entry('"t"', (), b"\x00rpc-entry-1\n")])
def test_an_entry_comes_back_as_it_was_stored(entry: Entry) -> None:
    assert decode(encode(entry)) == entry


@pytest.mark.parametrize(
    "stored",
    [None, b'{"data":[]}', b"", b"rpc-entry-1\n", b"rpc-entry-1\n\x00\x00\x00\x05{nope"],
    ids=["absent", "an older format's body", "empty", "marker only", "broken header"],
)
def test_anything_else_is_a_miss(stored: bytes | None) -> None:
    assert decode(stored) is None
