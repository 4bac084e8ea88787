"""Regenerate the `expected` Druid queries of tests/golden/druid after a deliberate change.

Run `python -m tests.unit.write_goldens`, then review every diff with `git diff tests/golden`.
"""

from __future__ import annotations

import json

from tests.support.golden import GOLDEN, druid_extras, druid_native


def main() -> None:
    for path in sorted((GOLDEN / "druid").glob("*.json")):
        case = json.loads(path.read_text())
        case["expected"] = druid_native(case["request"])
        if extras := druid_extras(case["request"]):
            case["expected_extras"] = extras
        path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
