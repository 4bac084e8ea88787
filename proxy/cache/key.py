"""The cache key, built by one function from the organization, the canonical query and the data version."""

from __future__ import annotations

import hashlib
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from proxy.query.plan import ResultPlan


def canonical_query(plan: ResultPlan) -> bytes:
    """Everything in a validated plan that changes its answer, as canonical JSON bytes."""
    form = {"query": _canonical(plan.query), "max_rows": plan.max_rows}
    return orjson.dumps(form, option=orjson.OPT_SORT_KEYS)


def _canonical(value: Any) -> Any:
    # Each dataclass is tagged with its class: `Regex` and `Like` have the same fields.
    if is_dataclass(value) and not isinstance(value, type):
        named = {spec.name: _canonical(getattr(value, spec.name)) for spec in fields(value)}
        return {"class": type(value).__name__, **named}
    if isinstance(value, tuple | list):
        return [_canonical(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ZoneInfo):
        return value.key
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"no canonical form for {type(value).__name__}")


def cache_key(organization: str, query: bytes, data_version: str) -> str:
    """The key of one answer: a digest of its organization, canonical query and data version."""
    digest = hashlib.sha256()
    # Each part is length-prefixed, so no two different triples share a digest input.
    for part in (organization.encode(), query, data_version.encode()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def entity_tag(key: str) -> str:
    """The strong ETag a caller sees for an answer: a digest of its key and the engine's tags, quoted."""
    return f'"{key}"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an `If-None-Match` header names this ETag (weak forms compare equal, as RFC 9110 says)."""
    if not if_none_match:
        return False
    candidates = {part.strip().removeprefix("W/") for part in if_none_match.split(",")}
    return tag in candidates or "*" in candidates
