"""The embedded engine's data version: which generation CURRENT points at, and when it was published."""

from __future__ import annotations

from pathlib import Path

from proxy.backends.base import Scope
from proxy.backends.embedded.storage import Generations
from proxy.query.plan import ResultPlan


class EmbeddedVersions:
    """Every load publishes a new generation, so the generation is the version of all its data."""

    def __init__(self, directory: Path) -> None:
        self.generations = Generations(directory)

    def version(self, plan: ResultPlan, scope: Scope) -> str:
        """`embedded:<generation>:<CURRENT's fingerprint>`; the fingerprint tells a rebuilt data
        directory, whose numbering starts over, from the one before."""
        signature = self.generations.signature()
        name = self.generations.current()
        fingerprint = "none" if signature is None else "-".join(map(str, signature))
        return f"embedded:{name}:{fingerprint}"
