"""Compare a service answer with the exact oracle: exact counts, groups and order; avg to 1e-9;
hyperUnique within a stated tolerance (exact on the embedded engine)."""

from __future__ import annotations

import math
from typing import Any

# Druid answers from DataSketches HLL at lgK 14: exact in list mode for small sets, ~0.8%
# standard error beyond, so 3% is about four standard errors. The embedded engine is exact.
# The observed distribution is printed at the end of the run.
HLL_TOLERANCE = {"druid": 0.03, "embedded": 0.0}
# Relative errors of every hyperUnique value compared, per comparison (printed after the run).
HLL_ERRORS: dict[str, list[float]] = {}


def _close(actual: Any, expected: Any, relative: float) -> bool:
    if actual is None or expected is None:
        return actual is expected
    return math.isclose(actual, expected, rel_tol=relative, abs_tol=relative)


def _assert_value(backend: str, where: str, name: str, a: Any, e: Any, errors: list[float]) -> None:
    if name.endswith("_hyper_unique"):
        error = abs(a - e) / max(e, 1.0)
        errors.append(error)
        assert error <= HLL_TOLERANCE[backend], f"{where} {name}: {a} vs exact {e}"
    elif name == "count":
        assert a == e and isinstance(a, int), f"{where} count: {a} vs {e}"
    else:
        assert _close(a, e, 1e-9), f"{where} {name}: {a} vs {e}"


def assert_same(backend: str, actual: dict[str, Any], expected: dict[str, Any], errors: list[float]) -> None:
    """Raise AssertionError on the first difference (the rows, then `totals` and `comparison`
    when expected); append observed HLL errors to `errors`."""
    assert set(actual) == set(expected), f"keys {sorted(actual)} vs {sorted(expected)}"
    _assert_rows(backend, actual, expected, errors)
    if "totals" in expected:
        metrics = [field["name"] for field in expected["fields"] if field["type"] == "metric"]
        assert len(actual["totals"]) == len(metrics)
        for name, a, e in zip(metrics, actual["totals"], expected["totals"]):
            _assert_value(backend, "totals", name, a, e, errors)
    if "comparison" in expected:
        assert actual["comparison"]["interval"] == expected["comparison"]["interval"]
        compared = {key: value for key, value in actual["comparison"].items() if key != "interval"}
        wanted = {key: value for key, value in expected["comparison"].items() if key != "interval"}
        assert_same(backend, compared, wanted, errors)


def _assert_rows(backend: str, actual: dict[str, Any], expected: dict[str, Any], errors: list[float]) -> None:
    assert actual["fields"] == expected["fields"]
    names = [field["name"] for field in expected["fields"]]
    metric_start = next(i for i, f in enumerate(expected["fields"]) if f["type"] == "metric")
    assert len(actual["data"]) == len(expected["data"]), "row counts differ"
    for number, (got, want) in enumerate(zip(actual["data"], expected["data"])):
        assert got[:metric_start] == want[:metric_start], f"row {number}: timestamp/groups differ"
        for name, a, e in zip(names[metric_start:], got[metric_start:], want[metric_start:]):
            _assert_value(backend, f"row {number}", name, a, e, errors)
