"""The search axis: how workflows and tools are ranked for a query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from py_code_mode.search.lexical import SearchDocument, SearchHit

__all__ = ["Ranker", "SearchDocument", "SearchHit"]


@runtime_checkable
class Ranker(Protocol):
    """Ranks documents for a query, best first, returning only matches."""

    async def rank(
        self, query: str, documents: Sequence[SearchDocument], *, limit: int
    ) -> list[SearchHit]:
        """Best ``limit`` documents for ``query`` with scores and a reason."""
        ...
