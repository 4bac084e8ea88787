"""Request bodies → validated queries: repeats skip validation, failures and big bodies never stick."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from proxy.errors import BadRequest, UnsupportedMediaType
from proxy.service.bodies import CACHED_BODY_BYTES, QueryBodies
from proxy.service.call import Call
from tests.support.ids import ORG
from tests.unit.web import QUERY, settings_for


def _call(body: bytes, is_json: bool = True) -> Call:
    return Call(ORG, None, "req-1", 0.0, is_json=is_json, body=lambda: body)


def _unread() -> bytes:
    raise AssertionError("the body was read")


@pytest.fixture
def bodies(tmp_path: Path) -> QueryBodies:
    return QueryBodies(settings_for(tmp_path, max_group_by=1))


def test_a_repeated_body_is_validated_once(bodies: QueryBodies) -> None:
    body = orjson.dumps(QUERY)
    assert bodies.load(_call(body)) is bodies.load(_call(body))


def test_a_large_body_is_validated_afresh(bodies: QueryBodies) -> None:
    body = orjson.dumps(QUERY)[:-1] + b" " * CACHED_BODY_BYTES + b"}"
    first, second = bodies.load(_call(body)), bodies.load(_call(body))
    assert first == second
    assert first is not second


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (orjson.dumps({**QUERY, "granularity": "fortnight"}), "granularity"),
        (orjson.dumps({**QUERY, "group_by": ["city", "country"]}), "group_by"),  # the settings' limit
    ],
    ids=["not_json", "not_an_object", "invalid_field", "over_a_limit"],
)
def test_an_invalid_body_is_refused_every_time(bodies: QueryBodies, body: bytes, field: str | None) -> None:
    errors = []
    for _ in range(2):
        with pytest.raises(BadRequest) as raised:
            bodies.load(_call(body))
        errors.append(raised.value.errors)
    assert errors[0] == errors[1]
    assert field is None or field in (errors[0] or {})


def test_a_body_not_declared_json_is_refused_unread(bodies: QueryBodies) -> None:
    with pytest.raises(UnsupportedMediaType):
        bodies.load(Call(ORG, None, "req-1", 0.0, is_json=False, body=_unread))
