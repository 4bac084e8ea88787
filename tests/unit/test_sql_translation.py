"""Public request → exact embedded SQL and parameters, for the Druid golden requests and more."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from proxy.backends.embedded.storage import create_table_sql
from proxy.backends.embedded.translator import translate
from proxy.query.plan import plan_result
from schemas.request import QuerySchema
from tests.unit.golden import GOLDEN, cases

ORG = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def expected_sql(request: dict[str, Any]) -> dict[str, Any]:
    """The golden form of a request's SQL: statement lines and parameters."""
    plan = plan_result(QuerySchema().load(request), max_buckets=10_000, max_rows=100_000)
    explained = translate(plan, ORG).explain()
    return {"sql": explained["sql"].split("\n"), "parameters": explained["parameters"]}


@pytest.mark.parametrize("case", cases("sql"))
def test_translation(case: dict[str, Any]) -> None:
    assert expected_sql(case["request"]) == case["expected"]


@pytest.mark.parametrize("case", cases("sql"))
def test_statement_runs_on_an_empty_table(case: dict[str, Any]) -> None:
    connection = duckdb.connect()
    connection.execute(create_table_sql())
    expected = case["expected"]
    assert connection.execute("\n".join(expected["sql"]), expected["parameters"]).fetchall() == []


def test_every_druid_request_has_its_sql_case() -> None:
    druid = {path.name for path in (GOLDEN / "druid").glob("*.json")}
    sql = {path.name for path in (GOLDEN / "sql").glob("*.json")}
    assert druid <= sql
    assert len(sql - druid) >= 5
