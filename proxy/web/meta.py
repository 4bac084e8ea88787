"""`GET .../visitor_sessions/meta`: the vocabulary and limits a caller may use, read from the
tables the schemas validate against, so the document cannot drift from what is accepted."""

from __future__ import annotations

from typing import Any

from proxy.settings import Settings
from schemas.json_schema import CROSS_FIELD_RULES
from schemas.request import MAX_AGGREGATIONS
from schemas.vocabulary import (
    AGGREGATION_VALUES,
    AGGREGATIONS,
    BOUND_ORDERINGS,
    COMPARE_PERIODS,
    DIMENSIONS,
    FILTER_TYPES,
    GRANULARITIES,
    ORDER_DIRECTIONS,
    SEARCH_TYPES,
    TEXT_KINDS,
    DimensionKind,
    aggregation_output,
)

_SETTINGS_LIMITS = (
    "max_interval_days",
    "max_buckets",
    "max_group_by",
    "max_filter_depth",
    "max_filter_nodes",
    "max_filter_values",
    "max_result_rows",
    "max_body_bytes",
    "request_timeout_secs",
    "rate_limit_per_org_per_min",
    "rate_limit_per_principal_per_min",
    "max_concurrent_per_org",
    "max_concurrent_per_principal",
)


def _aggregation(agg_type: str) -> dict[str, Any]:
    allowed = AGGREGATIONS[agg_type][0]
    names: tuple[str | None, ...] = allowed if allowed is not None else (None,)
    return {
        "type": agg_type,
        "fields": list(allowed) if allowed is not None else None,
        "outputs": [{"field": name, "output": aggregation_output(agg_type, name)} for name in names],
        "value": AGGREGATION_VALUES[agg_type],
    }


def meta_document(settings: Settings) -> dict[str, Any]:
    """What `.../meta` answers for this deployment; the same for every organization."""
    return {
        "dimensions": [{"name": name, "kind": kind.value} for name, kind in DIMENSIONS.items()],
        "aggregations": [_aggregation(agg_type) for agg_type in AGGREGATIONS],
        "filter_types": list(FILTER_TYPES),
        "search_types": list(SEARCH_TYPES),
        "pattern_filter_kinds": sorted(kind.value for kind in TEXT_KINDS),
        "bound_orderings": {kind.value: list(names) for kind, names in BOUND_ORDERINGS.items()},
        "granularities": list(GRANULARITIES),
        "order_directions": list(ORDER_DIRECTIONS),
        "compare_periods": list(COMPARE_PERIODS),
        "rules": dict(CROSS_FIELD_RULES),
        "limits": {
            "max_aggregations": MAX_AGGREGATIONS,
            **{name: getattr(settings, name) for name in _SETTINGS_LIMITS},
        },
    }


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
    }


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


_NAMES = _array({"type": "string"})
_OUTPUT = _object({"field": {"type": ["string", "null"]}, "output": {"type": "string"}})
# The JSON Schema of `meta_document`'s answer (component `Meta` of /openapi.json).
META_SCHEMA: dict[str, Any] = _object(
    {
        "dimensions": _array(
            _object(
                {"name": {"enum": list(DIMENSIONS)}, "kind": {"enum": [kind.value for kind in DimensionKind]}}
            )
        ),
        "aggregations": _array(
            _object(
                {
                    "type": {"enum": list(AGGREGATIONS)},
                    "fields": {"type": ["array", "null"], "items": {"type": "string"}},
                    "outputs": _array(_OUTPUT),
                    "value": {"enum": sorted(set(AGGREGATION_VALUES.values()))},
                }
            )
        ),
        "filter_types": _array({"enum": list(FILTER_TYPES)}),
        "search_types": _NAMES,
        "pattern_filter_kinds": _NAMES,
        "bound_orderings": {"type": "object", "additionalProperties": _NAMES},
        "granularities": _array({"enum": list(GRANULARITIES)}),
        "order_directions": _NAMES,
        "compare_periods": _array({"enum": list(COMPARE_PERIODS)}),
        "rules": {
            "type": "object",
            "description": "Field path → a rule the request schema cannot state (checked by the server).",
            "additionalProperties": {"type": "string"},
        },
        "limits": {
            "type": "object",
            "description": "Caps on one query, and the admission limits (0: off).",
            "additionalProperties": {"type": ["number", "null"]},
        },
    }
)
