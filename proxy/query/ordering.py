"""The one ordering rule of a result, which the renderer and both translators derive from.

Rows sort by the caller's `order_by` columns, then by the remaining group-by columns
ascending, then by the bucket start; without an `order_by` the bucket start comes first.
Nulls sort first ascending and last descending, as if null were the smallest value.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.model import Query

TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class SortColumn:
    """One column of the result order."""

    name: str
    position: int  # in a result row: 0 the bucket start, then the group values, then the metrics
    descending: bool

    @property
    def nullable(self) -> bool:
        """Whether the column can hold nulls; every bucket has a start."""
        return self.position != 0


def sort_columns(query: Query) -> tuple[SortColumn, ...]:
    """The result order of a query, most significant column first."""
    positions = {name: index for index, name in enumerate((TIMESTAMP, *query.group_by, *query.metric_names))}
    explicit = [SortColumn(o.field, positions[o.field], o.descending) for o in query.order_by]
    ordered = {column.name for column in explicit}
    groups = [SortColumn(name, positions[name], False) for name in query.group_by if name not in ordered]
    timestamp = SortColumn(TIMESTAMP, 0, False)
    if not explicit:
        return (timestamp, *groups)
    return (*explicit, *groups, timestamp)
