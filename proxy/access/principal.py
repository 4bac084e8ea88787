"""Who a caller is once authenticated, and the canonical form of an organization id."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and the organizations it may read."""

    name: str
    organizations: frozenset[str]


def canonical_organization_id(organization_id: str) -> str:
    """The lower-case hyphenated form of a UUID; ValueError if it is not one."""
    return str(uuid.UUID(organization_id))
