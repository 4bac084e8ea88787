"""The recursive filter tree: one strict schema per filter type, dispatched through a table."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from schemas.model import And, Bound, Filter, In, Like, Not, Or, Regex, Scalar, Search, Selector
from schemas.portable_regex import RegexNotPortable, check_portable
from schemas.vocabulary import (
    BOUND_ORDERINGS,
    DIMENSIONS,
    FILTER_TYPES,
    INT64_MAX,
    INT64_MIN,
    SEARCH_TYPES,
    TEXT_KINDS,
    DimensionKind,
)

MAX_PATTERN_LENGTH = 500
MAX_VALUE_LENGTH = 1_000
# Regex syntax both engines share: Druid runs java.util.regex, DuckDB runs RE2, so constructs
# RE2 lacks (look-around, back-references, atomic groups) are refused rather than half-supported.
NUMERIC_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", re.ASCII)
_NON_PORTABLE_REGEX = re.compile(r"\(\?<?[=!]|\(\?>|\\[1-9]|\(\?P[=<]|[*+?}]\+")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_scalar(value: object) -> Scalar:
    if value is None or (isinstance(value, str) and len(value) <= MAX_VALUE_LENGTH):
        return value
    # Floats too: one range for every number, as the published schema states it.
    if isinstance(value, int | float) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX:
        return value
    raise ValidationError(
        "Must be a string (at most 1000 characters), a number in the 64-bit integer range, or null."
    )


def _as_number(value: Scalar) -> float | None:
    if _is_number(value):
        return float(value)  # type: ignore[arg-type]
    # Python's float() also reads "1_000", " 12 " and other scripts' digits ("١٢"); Druid reads
    # none of them alike (it matched every row for "1_000"), so numeric text is plain ASCII.
    if not isinstance(value, str) or not NUMERIC_TEXT.fullmatch(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class ScalarField(fields.Field):  # type: ignore[type-arg]
    """A filter value: string, finite number or null — never a boolean, list or object."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Scalar:
        return _check_scalar(value)


class StrictBoolean(fields.Boolean):
    """Only JSON `true`/`false`; marshmallow's default also takes "yes", 1 and friends."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        # An identity test: 1 == True and 0.0 == False, so a set lookup would take them.
        if value is True or value is False:
            return value
        raise self.make_error("invalid", input=value)


class FilterField(fields.Field):  # type: ignore[type-arg]
    """One filter object of any type, loaded through `FILTER_SCHEMAS`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Filter:
        return load_filter(value)


def _dimension_field() -> fields.String:
    return fields.String(required=True, validate=validate.OneOf(DIMENSIONS))


class _FilterSchema(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True)


class _DimensionFilterSchema(_FilterSchema):
    dimension = _dimension_field()


class AndSchema(_FilterSchema):
    fields_ = fields.List(FilterField(), data_key="fields", required=True, validate=validate.Length(min=1))

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> And:
        return And(tuple(data["fields_"]))


class OrSchema(AndSchema):
    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Or:
        return Or(tuple(data["fields_"]))


class NotSchema(_FilterSchema):
    field = FilterField(required=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Not:
        return Not(data["field"])


def _check_numeric_values(dimension: str, values: list[Scalar], key: str) -> None:
    if DIMENSIONS.get(dimension) is not DimensionKind.NUMBER:
        return
    if any(value is not None and _as_number(value) is None for value in values):
        raise ValidationError(f"{dimension} is numeric: values must be numbers or null.", key)


class SelectorSchema(_DimensionFilterSchema):
    value = ScalarField(required=True, allow_none=True)

    @validates_schema
    def check_value(self, data: dict[str, Any], **kwargs: Any) -> None:
        _check_numeric_values(data["dimension"], [data["value"]], "value")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Selector:
        return Selector(data["dimension"], data["value"])


class InSchema(_DimensionFilterSchema):
    values = fields.List(ScalarField(allow_none=True), required=True, validate=validate.Length(min=1))

    @validates_schema
    def check_values(self, data: dict[str, Any], **kwargs: Any) -> None:
        _check_numeric_values(data["dimension"], data["values"], "values")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> In:
        return In(data["dimension"], tuple(data["values"]))


class BoundSchema(_DimensionFilterSchema):
    lower = ScalarField()
    upper = ScalarField()
    lowerStrict = StrictBoolean(load_default=False)
    upperStrict = StrictBoolean(load_default=False)
    ordering = fields.String()

    @validates_schema
    def check_bounds(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("lower") is None and data.get("upper") is None:
            raise ValidationError("Give `lower`, `upper` or both.", "lower")
        kind = DIMENSIONS[data["dimension"]]
        ordering = data.get("ordering", BOUND_ORDERINGS[kind][0])
        if ordering not in BOUND_ORDERINGS[kind]:
            allowed = ", ".join(BOUND_ORDERINGS[kind])
            raise ValidationError(f"On {data['dimension']} the ordering is one of: {allowed}.", "ordering")
        bounds = [data.get("lower"), data.get("upper")]
        if ordering == "numeric" and any(b is not None and _as_number(b) is None for b in bounds):
            raise ValidationError("Numeric ordering needs numeric bounds.", "lower")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Bound:
        kind = DIMENSIONS[data["dimension"]]
        return Bound(
            dimension=data["dimension"],
            lower=data.get("lower"),
            upper=data.get("upper"),
            lower_strict=data["lowerStrict"],
            upper_strict=data["upperStrict"],
            ordering=data.get("ordering", BOUND_ORDERINGS[kind][0]),
        )


def _check_text_dimension(dimension: str) -> None:
    if DIMENSIONS[dimension] not in TEXT_KINDS:
        raise ValidationError(f"{dimension} is numeric: use selector, in or bound.", "dimension")


def _pattern_field() -> fields.String:
    return fields.String(required=True, validate=validate.Length(min=1, max=MAX_PATTERN_LENGTH))


class RegexSchema(_DimensionFilterSchema):
    pattern = _pattern_field()

    @validates_schema
    def check_pattern(self, data: dict[str, Any], **kwargs: Any) -> None:
        _check_text_dimension(data["dimension"])
        try:
            with warnings.catch_warnings():
                # Python warns on `[[`-style set syntax; such patterns are refused just below.
                warnings.simplefilter("ignore", FutureWarning)
                re.compile(data["pattern"])
        except re.error as exc:
            raise ValidationError(f"Invalid regular expression: {exc}.", "pattern") from exc
        if _NON_PORTABLE_REGEX.search(data["pattern"]):
            raise ValidationError(
                "Look-around, back-references, atomic groups and possessive quantifiers are not supported.",
                "pattern",
            )
        try:
            check_portable(data["pattern"])
        except RegexNotPortable as exc:
            raise ValidationError(str(exc), "pattern") from exc

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Regex:
        return Regex(data["dimension"], data["pattern"])


class LikeSchema(_DimensionFilterSchema):
    pattern = _pattern_field()

    @validates_schema
    def check_pattern(self, data: dict[str, Any], **kwargs: Any) -> None:
        _check_text_dimension(data["dimension"])
        if re.search(r"(?<!\\)(\\\\)*\\$", data["pattern"]):
            raise ValidationError("A pattern cannot end with a lone escape `\\`.", "pattern")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Like:
        return Like(data["dimension"], data["pattern"])


class SearchQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.OneOf(SEARCH_TYPES))
    value = fields.String(required=True, validate=validate.Length(min=1, max=MAX_VALUE_LENGTH))


class SearchSchema(_DimensionFilterSchema):
    query = fields.Nested(SearchQuerySchema, required=True)

    @validates_schema
    def check_dimension(self, data: dict[str, Any], **kwargs: Any) -> None:
        _check_text_dimension(data["dimension"])

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Search:
        query = data["query"]
        return Search(data["dimension"], query["type"] == "contains", query["value"])


# Typed node → the schema that loads it; the public names come from `FILTER_TYPES`.
_NODE_SCHEMAS: dict[type[Filter], type[Schema]] = {
    And: AndSchema,
    Or: OrSchema,
    Not: NotSchema,
    Selector: SelectorSchema,
    In: InSchema,
    Bound: BoundSchema,
    Regex: RegexSchema,
    Like: LikeSchema,
    Search: SearchSchema,
}
FILTER_SCHEMAS: dict[str, type[Schema]] = {name: _NODE_SCHEMAS[node] for name, node in FILTER_TYPES.items()}

# One instance per type, built once: constructing a marshmallow schema copies its declared
# fields, and `load` keeps no state on the instance.
_FILTER_SCHEMA_INSTANCES: dict[str, Schema] = {kind: schema() for kind, schema in FILTER_SCHEMAS.items()}


def load_filter(value: object) -> Filter:
    """Load one filter object into its typed form; raises ValidationError naming the problem."""
    if not isinstance(value, Mapping):
        raise ValidationError("Must be a filter object.")
    kind = value.get("type")
    # A list or object `type` is unhashable: test for text before the table lookup.
    schema = _FILTER_SCHEMA_INSTANCES.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise ValidationError({"type": [f"Must be one of: {', '.join(FILTER_TYPES)}."]})
    loaded: Filter = schema.load(value)
    return loaded
