"""Apache Druid ingestion specs, shipped with the package so installed loaders find them."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any


def load_spec(name: str = "visitor_sessions") -> dict[str, Any]:
    """A fresh copy of the named ingestion spec template."""
    spec: dict[str, Any] = json.loads((files(__package__) / f"{name}.json").read_text())
    return spec
