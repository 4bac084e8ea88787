"""Public request → exact Druid native query, and invalid requests → exact field errors."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import ValidationError

from proxy.errors import BadRequest, field_paths
from proxy.query.plan import plan_result
from schemas.request import QuerySchema
from tests.support.golden import GOLDEN, cases, druid_extras, druid_native


@pytest.mark.parametrize("case", cases("druid"))
def test_translation(case: dict[str, Any]) -> None:
    assert druid_native(case["request"]) == case["expected"]


@pytest.mark.parametrize("case", cases("druid"))
def test_comparison_and_totals_queries(case: dict[str, Any]) -> None:
    assert druid_extras(case["request"]) == case.get("expected_extras", {})


@pytest.mark.parametrize("case", cases("invalid"))
def test_invalid_request(case: dict[str, Any]) -> None:
    with pytest.raises((ValidationError, BadRequest)) as caught:
        plan_result(QuerySchema().load(case["request"]), max_buckets=10_000, max_rows=100_000)
    error = caught.value
    # Compared as the HTTP body carries them: flat field paths → messages.
    messages = field_paths(error.messages) if isinstance(error, ValidationError) else error.errors
    assert messages == case["errors"]


def test_golden_folders_are_not_empty() -> None:
    assert len(list((GOLDEN / "druid").glob("*.json"))) >= 30
    assert len(list((GOLDEN / "invalid").glob("*.json"))) >= 30
