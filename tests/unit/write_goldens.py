"""Regenerate the `expected` Druid queries of tests/golden/druid after a deliberate change.

Run `python -m tests.unit.write_goldens`, then review every diff with `git diff tests/golden`.
"""

from __future__ import annotations

import json

from tests.unit.golden import GOLDEN
from tests.unit.test_druid_translation import _translate


def main() -> None:
    for path in sorted((GOLDEN / "druid").glob("*.json")):
        case = json.loads(path.read_text())
        case["expected"] = _translate(case["request"])
        path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
