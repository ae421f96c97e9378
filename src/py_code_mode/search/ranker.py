"""The dependency-free ranker: lexical only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from py_code_mode.search.lexical import LexicalIndexCache, SearchDocument, SearchHit

__all__ = ["LexicalRanker"]


class LexicalRanker:
    """Ranks by word overlap with names, descriptions, parameters and source.

    The choice for keyword-only search that never imports fastembed or waits
    for a model: ``Session(..., ranker=LexicalRanker())``. The default
    :class:`~py_code_mode.search.semantic.HybridRanker` ranks the same way while
    no model is available, and notes that in ``why``.

    The documents' index is kept between searches, so searching an unchanged
    library again does not tokenise it again (see
    :class:`~py_code_mode.search.lexical.LexicalIndexCache`).

    Args:
        field_weights: BM25 field weights, merged over the lexical defaults.

    Raises:
        ConfigError: A field weight is negative or not a number.
    """

    def __init__(self, field_weights: Mapping[str, float] | None = None) -> None:
        self._indexes = LexicalIndexCache(field_weights)

    async def rank(
        self, query: str, documents: Sequence[SearchDocument], *, limit: int
    ) -> list[SearchHit]:
        """Best ``limit`` lexical matches; CPU-only and fast enough to stay on the loop."""
        return self._indexes.index(documents).rank(query, limit=limit)
