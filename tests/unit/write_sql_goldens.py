"""Write tests/golden/sql: the SQL for every Druid golden request, and refresh the SQL-only cases.

Run `python -m tests.unit.write_sql_goldens`, then review every diff with `git diff tests/golden/sql`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.golden import GOLDEN, embedded_extras, embedded_sql


def _write(path: Path, case: dict[str, Any]) -> None:
    case = {
        "description": case["description"],
        "request": case["request"],
        "expected": embedded_sql(case["request"]),
    }
    if extras := embedded_extras(case["request"]):
        case["expected_extras"] = extras
    path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    for source in sorted((GOLDEN / "druid").glob("*.json")):
        _write(GOLDEN / "sql" / source.name, json.loads(source.read_text()))
    for path in sorted((GOLDEN / "sql").glob("*.json")):
        if not (GOLDEN / "druid" / path.name).exists():
            _write(path, json.loads(path.read_text()))


if __name__ == "__main__":
    main()
