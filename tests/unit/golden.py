"""Golden-file helpers: each JSON file is one case, its stem the test id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).parent.parent / "golden"


def cases(folder: str) -> list[Any]:
    """One pytest param per JSON file in `tests/golden/<folder>`."""
    paths = sorted((GOLDEN / folder).glob("*.json"))
    return [pytest.param(json.loads(path.read_text()), id=path.stem) for path in paths]
