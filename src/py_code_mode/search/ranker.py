"""The default ranker: lexical, dependency-free."""

from __future__ import annotations

from collections.abc import Sequence

from py_code_mode.search.lexical import SearchDocument, SearchHit, lexical_rank

__all__ = ["LexicalRanker"]


class LexicalRanker:
    """Ranks by word overlap with names, descriptions, parameters and source."""

    async def rank(
        self, query: str, documents: Sequence[SearchDocument], *, limit: int
    ) -> list[SearchHit]:
        """Best ``limit`` lexical matches; CPU-only and fast enough to stay on the loop."""
        return lexical_rank(query, documents, limit=limit)
