"""Public filter tree → Druid native filter, with the public two-valued logic kept exact.

Pure: no Flask, no HTTP, no environment. Used by `proxy.backends.druid.translator`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

from proxy.query.catalog import DIMENSION_COLUMNS, ORGANIZATION_COLUMN, supported
from proxy.query.plan import ResultPlan
from schemas.model import And, Bound, Filter, In, Leaf, Like, Not, Or, Regex, Search, Selector, scalar_text

Json = dict[str, Any]


def dimension_column(dimension: str) -> str:
    """The Druid column of a public dimension."""
    return supported(DIMENSION_COLUMNS, dimension, "dimension")


def _is_null(dimension: str) -> Json:
    return {"type": "null", "column": dimension_column(dimension)}


def _not(native: Json) -> Json:
    return {"type": "not", "field": native}


def _selector(leaf: Selector) -> Json:
    return {
        "type": "selector",
        "dimension": dimension_column(leaf.dimension),
        "value": scalar_text(leaf.value),
    }


def _in(leaf: In) -> Json:
    values = sorted({text for text in map(scalar_text, leaf.values) if text is not None})
    return {"type": "in", "dimension": dimension_column(leaf.dimension), "values": values}


def _bound(leaf: Bound) -> Json:
    native: Json = {"type": "bound", "dimension": dimension_column(leaf.dimension), "ordering": leaf.ordering}
    if leaf.lower is not None:
        native.update(lower=scalar_text(leaf.lower), lowerStrict=leaf.lower_strict)
    if leaf.upper is not None:
        native.update(upper=scalar_text(leaf.upper), upperStrict=leaf.upper_strict)
    return native


# An inline flag group that turns case-insensitive matching on: (?i), (?mi), (?is:...).
_CASE_INSENSITIVE = re.compile(r"\(\?[ms]*i")


def _regex(leaf: Regex) -> Json:
    # java.util.regex folds only ASCII case under (?i) unless UNICODE_CASE (?u) is on as well;
    # RE2 and Python fold Unicode, so "(?i)ZÜRICH" matched Zürich on the embedded engine only.
    pattern = f"(?u){leaf.pattern}" if _CASE_INSENSITIVE.search(leaf.pattern) else leaf.pattern
    return {"type": "regex", "dimension": dimension_column(leaf.dimension), "pattern": pattern}


def _like(leaf: Like) -> Json:
    return {
        "type": "like",
        "dimension": dimension_column(leaf.dimension),
        "pattern": leaf.pattern,
        "escape": "\\",
    }


def _search(leaf: Search) -> Json:
    query: Json = (
        {"type": "contains", "value": leaf.value, "caseSensitive": True}
        if leaf.case_sensitive
        else {"type": "insensitive_contains", "value": leaf.value}
    )
    return {"type": "search", "dimension": dimension_column(leaf.dimension), "query": query}


def _matches_null(leaf: Leaf) -> bool:
    if isinstance(leaf, Selector):
        return leaf.value is None
    return isinstance(leaf, In) and None in leaf.values


def _leaf(native_filter: Callable[[Any], Json], leaf: Leaf, negated: bool) -> Json:
    """A leaf whose `native_filter` covers its non-null values, with null rows decided here."""
    # Druid 32+ filters are three-valued: a predicate on a null row is UNKNOWN, and NOT UNKNOWN
    # is still UNKNOWN, so `not(x)` alone would drop null rows. The public API is two-valued,
    # so null rows are decided explicitly with a `null` filter on both sides of a negation.
    if isinstance(leaf, Selector) and leaf.value is None:
        return _not(_is_null(leaf.dimension)) if negated else _is_null(leaf.dimension)
    if isinstance(leaf, In) and not [v for v in leaf.values if v is not None]:
        return _not(_is_null(leaf.dimension)) if negated else _is_null(leaf.dimension)
    native = native_filter(leaf)
    if _matches_null(leaf):
        if negated:
            return {"type": "and", "fields": [_not(native), _not(_is_null(leaf.dimension))]}
        return {"type": "or", "fields": [native, _is_null(leaf.dimension)]}
    if negated:
        return {"type": "or", "fields": [_not(native), _is_null(leaf.dimension)]}
    if isinstance(leaf, Bound):
        # The legacy bound filter treats null as the smallest value when `lower` is absent.
        return {"type": "and", "fields": [native, _not(_is_null(leaf.dimension))]}
    return native


def _negation(node: Not, negated: bool) -> Json:
    # Negations are pushed down to the leaves (De Morgan), where nulls are decided explicitly.
    return translate_filter(node.field, not negated)


def _junction(node: And | Or, negated: bool) -> Json:
    conjunction = isinstance(node, And) != negated
    children = [translate_filter(child, negated) for child in node.fields]
    return {"type": "and" if conjunction else "or", "fields": children}


# Filter node type → its native filter, given whether a `not` above it is pending.
FILTERS: dict[type, Callable[[Any, bool], Json]] = {
    And: _junction,
    Or: _junction,
    Not: _negation,
    Selector: partial(_leaf, _selector),
    In: partial(_leaf, _in),
    Bound: partial(_leaf, _bound),
    Regex: partial(_leaf, _regex),
    Like: partial(_leaf, _like),
    Search: partial(_leaf, _search),
}


def translate_filter(node: Filter, negated: bool = False) -> Json:
    """A public filter (two-valued logic) → a native filter that matches exactly the same rows."""
    return supported(FILTERS, type(node), "filter")(node, negated)


def scoped_filter(plan: ResultPlan, organization_id: str) -> Json:
    """The plan's filter within the organization: every native query is scoped by it."""
    organization: Json = {
        "type": "equals",
        "column": ORGANIZATION_COLUMN,
        "matchValueType": "STRING",
        "matchValue": organization_id,
    }
    if plan.query.filter is None:
        return organization
    return {"type": "and", "fields": [organization, translate_filter(plan.query.filter)]}
