"""Public request → exact Druid native query, and invalid requests → exact field errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from marshmallow import ValidationError

from proxy.backends.druid.translator import translate
from proxy.errors import BadRequest
from proxy.query.plan import plan_result
from schemas.request import QuerySchema
from tests.unit.golden import GOLDEN, cases

ORG = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def _translate(request: dict[str, Any]) -> dict[str, Any]:
    plan = plan_result(QuerySchema().load(request), max_buckets=10_000, max_rows=100_000)
    return translate(plan, ORG, "visitor_sessions", "req-1", 28_500).native


@pytest.mark.parametrize("case", cases("druid"))
def test_translation(case: dict[str, Any]) -> None:
    assert _translate(case["request"]) == case["expected"]


@pytest.mark.parametrize("case", cases("invalid"))
def test_invalid_request(case: dict[str, Any]) -> None:
    with pytest.raises((ValidationError, BadRequest)) as caught:
        plan_result(QuerySchema().load(case["request"]), max_buckets=10_000, max_rows=100_000)
    error = caught.value
    messages = error.messages if isinstance(error, ValidationError) else error.errors
    # Compared as the HTTP body carries them: list indexes become string keys.
    assert json.loads(json.dumps(messages)) == case["errors"]


def test_golden_folders_are_not_empty() -> None:
    assert len(list((GOLDEN / "druid").glob("*.json"))) >= 30
    assert len(list((GOLDEN / "invalid").glob("*.json"))) >= 30
