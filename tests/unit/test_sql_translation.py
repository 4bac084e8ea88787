"""Public request → exact embedded SQL and parameters, for the Druid golden requests and more."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from proxy.backends.embedded.storage import create_table_sql
from tests.support.golden import GOLDEN, cases, embedded_extras, embedded_sql


@pytest.mark.parametrize("case", cases("sql"))
def test_translation(case: dict[str, Any]) -> None:
    assert embedded_sql(case["request"]) == case["expected"]


@pytest.mark.parametrize("case", cases("sql"))
def test_comparison_and_totals_statements(case: dict[str, Any]) -> None:
    assert embedded_extras(case["request"]) == case.get("expected_extras", {})


@pytest.mark.parametrize(
    "case", [case for case in cases("sql") if "totals" in case.values[0].get("expected_extras", {})]
)
def test_totals_statement_answers_one_empty_row_on_an_empty_table(case: Any) -> None:
    connection = duckdb.connect()
    connection.execute(create_table_sql())
    totals = case["expected_extras"]["totals"]
    [row] = connection.execute("\n".join(totals["sql"]), totals["parameters"]).fetchall()
    assert set(row) <= {0, None}


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
