"""Golden files: each JSON file under tests/golden/<folder> is one case, its stem the test id; and
the golden forms the translation tests compare with and the writer scripts regenerate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proxy.backends.druid.translator import translate as translate_druid
from proxy.backends.druid.translator import translate_totals as druid_totals
from proxy.backends.embedded.translator import translate as translate_sql
from proxy.backends.embedded.translator import translate_totals as sql_totals
from proxy.query.plan import ResultPlan, plan_result
from schemas.request import QuerySchema
from tests.support.ids import ORG

GOLDEN = Path(__file__).parent.parent / "golden"


def cases(folder: str) -> list[Any]:
    """One pytest param per JSON file in `tests/golden/<folder>`."""
    paths = sorted((GOLDEN / folder).glob("*.json"))
    return [pytest.param(json.loads(path.read_text()), id=path.stem) for path in paths]


def golden_plan(request: dict[str, Any]) -> ResultPlan:
    """The plan of a public request, under the limits the golden files were written with."""
    return plan_result(QuerySchema().load(request), max_buckets=10_000, max_rows=100_000)


def druid_native(request: dict[str, Any]) -> dict[str, Any]:
    """The golden form of a request's Druid query: the native query for ORG."""
    return translate_druid(golden_plan(request), ORG, "visitor_sessions", "req-1", 28_500).native


def _lines(explained: dict[str, Any]) -> dict[str, Any]:
    return {"sql": explained["sql"].split("\n"), "parameters": explained["parameters"]}


def embedded_sql(request: dict[str, Any]) -> dict[str, Any]:
    """The golden form of a request's SQL: statement lines and parameters."""
    return _lines(translate_sql(golden_plan(request), ORG).explain())


def druid_extras(request: dict[str, Any]) -> dict[str, Any]:
    """The golden form of the extra Druid queries a request asks for: its comparison, its totals."""
    plan = golden_plan(request)
    extras: dict[str, Any] = {}
    if plan.comparison is not None:
        extras["comparison"] = translate_druid(
            plan.comparison, ORG, "visitor_sessions", "req-1", 28_500
        ).native
    if plan.totals_intervals:
        extras["totals"] = druid_totals(plan, ORG, "visitor_sessions", "req-1", 28_500).native
    return extras


def embedded_extras(request: dict[str, Any]) -> dict[str, Any]:
    """The golden form of the extra SQL statements a request asks for: its comparison, its totals."""
    plan = golden_plan(request)
    extras: dict[str, Any] = {}
    if plan.comparison is not None:
        extras["comparison"] = _lines(translate_sql(plan.comparison, ORG).explain())
    if plan.totals_intervals:
        extras["totals"] = _lines(sql_totals(plan, ORG).explain())
    return extras
