"""`GET .../visitor_sessions/meta`: the vocabulary and limits a caller may use, read from the
tables the schemas validate against, so the document cannot drift from what is accepted."""

from __future__ import annotations

from typing import Any

from marshmallow import validate

from proxy.settings import Settings
from schemas.request import QuerySchema
from schemas.vocabulary import (
    AGGREGATIONS,
    BOUND_ORDERINGS,
    DIMENSIONS,
    FILTER_TYPES,
    GRANULARITIES,
    ORDER_DIRECTIONS,
    SEARCH_TYPES,
    TEXT_KINDS,
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
    }


def _max_aggregations() -> int | None:
    checks = QuerySchema().fields["aggregations"].validators
    return next((check.max for check in checks if isinstance(check, validate.Length)), None)


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
        "limits": {
            "max_aggregations": _max_aggregations(),
            **{name: getattr(settings, name) for name in _SETTINGS_LIMITS},
        },
    }
