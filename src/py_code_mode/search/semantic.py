"""Hybrid search: meaning (sentence embeddings) combined with words (BM25).

Score of a document for a query, when the embedding model is loaded::

    (cosine + LEXICAL_WEIGHT * lexical * coverage) / (1 + LEXICAL_WEIGHT)

``cosine`` compares the query with the document's name, callables (tools) and
description (the start of its source when it has no description). ``lexical``
is the BM25 score of :class:`~py_code_mode.search.lexical.LexicalIndex` over all
fields, source included, relative to the best lexical hit (0..1), and
``coverage`` the share of query words the document contains. Multiplying the
two keeps a single common word (``file``, ``url``) from outvoting meaning, while
a rare identifier that only the source knows (``pytesseract``) still lifts its
workflow. A document whose name is the query ranks first whatever the scores.
The weight (0.2) was chosen on the tuning queries of ``tests/search/eval_set.py``
only: paraphrased recall@1 is flat from 0.15 to 0.2 and falls above it, and
identifier queries start to miss below 0.15.

Misspelt query words (outside the model's vocabulary and the documents' words,
one edit from a word of the documents) are corrected before the query is
embedded and matched; see
:meth:`~py_code_mode.search.lexical.LexicalIndex.corrections`.

Until the model is loaded (or when it cannot be), ranking is lexical, exactly as
:func:`~py_code_mode.search.lexical.lexical_rank` ranks, and every ``why`` says
so. Documents with a negative cosine and no word in common with the query are
left out.

Costs are paid once: documents are tokenised and hashed when first seen (and
again only when they change), vectors are looked up in the storage backend's
embedding cache (keyed by model id and a hash of the embedded text) before the
model computes any, and both are kept in memory, so a warm search over 1,000
workflows costs a few milliseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from py_code_mode.errors import ConfigError, StorageError
from py_code_mode.search.embeddings import Embedder, get_embedder
from py_code_mode.search.lexical import (
    LexicalIndex,
    SearchDocument,
    SearchHit,
    _check_limit,
    merge_field_weights,
    query_terms,
)

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from py_code_mode.storage.protocol import StorageBackend

__all__ = [
    "DEFAULT_EMBED_FIELDS",
    "DEFAULT_LEXICAL_WEIGHT",
    "DEFAULT_LOAD_WAIT",
    "HybridRanker",
    "default_ranker",
    "embed_text",
    "embedding_key",
    "query_text",
]

logger = logging.getLogger(__name__)

DEFAULT_LEXICAL_WEIGHT: Final = 0.2
DEFAULT_LOAD_WAIT: Final = 2.0
DEFAULT_EMBED_FIELDS: Final = ("name", "callables", "description")
_EMBED_TEXT_VERSION: Final = "doc-v1"
_MAX_EMBED_CHARS: Final = 1_000
_SOURCE_CHARS_WITHOUT_DESCRIPTION: Final = 300
_CORPUS_CACHE_SIZE: Final = 4


def embed_text(document: SearchDocument, fields: Sequence[str] = DEFAULT_EMBED_FIELDS) -> str:
    """The text of ``document`` that the model embeds.

    Names are split into words (``fetch_json`` -> ``fetch json``) because that is
    how the model reads best; a document without a description is described by
    the start of its source instead.
    """
    parts: list[str] = []
    for field in fields:
        text = document.fields.get(field, "").strip()
        if not text:
            continue
        parts.append(text.replace("_", " ") if field == "name" else text)
    has_description = any(f != "name" and document.fields.get(f, "").strip() for f in fields)
    source = document.fields.get("source", "").strip()
    if not has_description and source:
        parts.append(source[:_SOURCE_CHARS_WITHOUT_DESCRIPTION])
    return ": ".join(parts)[:_MAX_EMBED_CHARS]


def embedding_key(text: str) -> str:
    """Cache key of an embedded text (the model id is the cache's other half)."""
    return hashlib.sha256(f"{_EMBED_TEXT_VERSION}\0{text}".encode()).hexdigest()[:32]


class _Doc:
    """A document as first seen: its embedded text and that text's cache key."""

    __slots__ = ("embed_text", "fields", "id", "key")

    def __init__(self, document: SearchDocument, embed_fields: Sequence[str]) -> None:
        self.id = document.id
        self.fields = dict(document.fields)
        self.embed_text = embed_text(document, embed_fields)
        self.key = embedding_key(self.embed_text)


class _Corpus:
    """One set of documents: its lexical index and, once computed, its vectors."""

    __slots__ = ("docs", "index", "matrix", "matrix_model")

    def __init__(self, docs: list[_Doc], index: LexicalIndex) -> None:
        self.docs = docs
        self.index = index
        self.matrix: NDArray[np.float32] | None = None
        self.matrix_model: str | None = None


class HybridRanker:
    """Ranks by meaning and words; implements :class:`~py_code_mode.search.protocol.Ranker`.

    Args:
        storage: Backend whose embedding cache (``get_vectors``/``put_vectors``)
            keeps vectors across processes; memory only when omitted.
        embedder: The model; the process-wide one for the configured model
            (:func:`~py_code_mode.search.embeddings.get_embedder`) when omitted.
        lexical_weight: Weight of the lexical signal next to the cosine (see the
            module docstring); 0 ranks by meaning alone, exact names included.
        field_weights: BM25 field weights, merged over the lexical defaults.
        embed_fields: Fields whose text is embedded, in order.
        load_wait: Seconds a search may wait for the model after loading began;
            later searches rank lexically until it is ready. Loading starts with
            the first search (or :meth:`index`).

    Raises:
        ConfigError: A weight or wait is negative or not a number.
    """

    def __init__(
        self,
        storage: StorageBackend | None = None,
        *,
        embedder: Embedder | None = None,
        lexical_weight: float = DEFAULT_LEXICAL_WEIGHT,
        field_weights: Mapping[str, float] | None = None,
        embed_fields: Sequence[str] = DEFAULT_EMBED_FIELDS,
        load_wait: float = DEFAULT_LOAD_WAIT,
    ) -> None:
        for label, value in (("lexical_weight", lexical_weight), ("load_wait", load_wait)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(f"HybridRanker {label} must be a number >= 0, got {value!r}")
        weights = merge_field_weights(field_weights)
        if isinstance(embed_fields, str) or not embed_fields:
            raise ConfigError(f"embed_fields must be a list of field names, got {embed_fields!r}")
        self.storage = storage
        self.embedder = embedder if embedder is not None else get_embedder()
        self.lexical_weight = float(lexical_weight)
        self.field_weights: Mapping[str, float] = weights
        self.embed_fields = tuple(embed_fields)
        self.load_wait = float(load_wait)
        self._docs: dict[tuple[str, tuple[str, ...]], _Doc] = {}
        self._corpora: OrderedDict[tuple[_Doc, ...], _Corpus] = OrderedDict()
        self._vectors: dict[str, NDArray[np.float32]] = {}
        self._vectors_model: str | None = None
        self._fill_lock = asyncio.Lock()
        self._warned: set[str] = set()

    # -- public ----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """How search ranks right now (``hybrid`` or ``lexical``) and the model's status."""
        status = self.embedder.status().to_dict()
        status["ranking"] = "hybrid" if self.embedder.ready else "lexical"
        return status

    async def rank(
        self, query: str, documents: Sequence[SearchDocument], *, limit: int
    ) -> list[SearchHit]:
        """Best ``limit`` documents for ``query``, best first, with score and why.

        Raises:
            ConfigError: ``limit`` is not a positive integer.
        """
        _check_limit(limit)
        if not isinstance(query, str):
            raise ConfigError(f"query must be a string, got {type(query).__name__}")
        terms = query_terms(query)
        if not documents:
            return []
        corpus = self._corpus(documents)
        if not terms:  # punctuation only: nothing to mean, only a name to match
            return corpus.index.rank(query, limit=limit)
        note = await self._model_note()
        if note is None:
            fixes = corpus.index.corrections(query, self.embedder.vocabulary)
            terms = corpus.index.with_corrections(terms, fixes)
            try:
                await self._fill_vectors(corpus)
                query_vector = await self.embedder.embed_query(query_text(query, fixes))
            except Exception as exc:  # noqa: BLE001 - any model failure degrades to lexical
                self._warn_once(
                    "embed",
                    "semantic search failed, ranking lexically for now: %s: %s",
                    type(exc).__name__,
                    exc,
                )
                note = "lexical only, embedding failed"
            else:
                return self._hybrid(corpus, query_vector, query, terms, limit)
        return [
            SearchHit(hit.id, hit.score, f"{note}; {hit.why}")
            for hit in corpus.index.rank(query, limit=limit)
        ]

    async def index(
        self, documents: Sequence[SearchDocument], *, timeout: float | None = None
    ) -> int:
        """Make sure every document has a vector, waiting up to ``timeout`` for the model.

        Useful to warm the cache ahead of the first search.

        Returns:
            How many texts the model embedded (0 when all came from a cache, or
            when no model is available).
        """
        if not documents or not await self.embedder.wait_ready(timeout):
            return 0
        before = self.embedder.texts_embedded
        await self._fill_vectors(self._corpus(documents))
        return self.embedder.texts_embedded - before

    # -- documents and corpus --------------------------------------------------------
    def _corpus(self, documents: Sequence[SearchDocument]) -> _Corpus:
        docs: list[_Doc] = []
        for document in documents:
            slot = (document.id, tuple(document.fields))
            doc = self._docs.get(slot)
            if doc is None or doc.fields != document.fields:
                doc = _Doc(document, self.embed_fields)
                self._docs[slot] = doc
            docs.append(doc)
        if len(self._docs) > 2 * len(docs) + 1_000:
            self._docs = {(d.id, tuple(d.fields)): d for d in docs}
        identity = tuple(docs)  # _Doc compares by identity: a changed document is a new one
        corpus = self._corpora.get(identity)
        if corpus is None:
            latest = next(reversed(self._corpora.values()), None)
            reuse = latest.index if latest is not None else None
            index = LexicalIndex(documents, self.field_weights, reuse=reuse)
            corpus = _Corpus(docs, index)
            self._corpora[identity] = corpus
            if len(self._corpora) > _CORPUS_CACHE_SIZE:
                self._corpora.popitem(last=False)
        else:
            self._corpora.move_to_end(identity)
        return corpus

    # -- model -----------------------------------------------------------------------
    async def _model_note(self) -> str | None:
        """``None`` when the model can be used now, else why ranking is lexical."""
        embedder = self.embedder
        embedder.start_loading()
        if not embedder.finished:
            since = embedder.loading_since
            waited = 0.0 if since is None else time.monotonic() - since
            if self.load_wait - waited > 0:
                await embedder.wait_ready(self.load_wait - waited)
        if embedder.ready:
            return None
        state = embedder.status().state
        if state == "loading":
            return "lexical only, embedding model still loading"
        if state == "disabled":
            return "lexical only, semantic search turned off"
        return "lexical only, embedding model unavailable"

    async def _fill_vectors(self, corpus: _Corpus) -> None:
        import numpy as np  # numpy comes with the optional [search] extra

        model_id = self.embedder.model_id
        if corpus.matrix is not None and corpus.matrix_model == model_id:
            return
        async with self._fill_lock:
            if corpus.matrix is not None and corpus.matrix_model == model_id:
                return  # a concurrent search filled it while this one waited for the lock
            if self._vectors_model != model_id:
                self._vectors = {}
                self._vectors_model = model_id
            vectors = self._vectors
            wanted = list(dict.fromkeys(d.key for d in corpus.docs if d.key not in vectors))
            if wanted:
                await self._load_cached(model_id, wanted, vectors)
            missing = [k for k in wanted if k not in vectors]
            if missing:
                needed = set(missing)
                texts = {d.key: d.embed_text for d in corpus.docs if d.key in needed}
                embedded = await self.embedder.embed([texts[k] for k in missing])
                fresh = dict(zip(missing, embedded, strict=True))
                vectors.update(fresh)
                await self._store(model_id, fresh)
            corpus.matrix = np.stack([vectors[d.key] for d in corpus.docs]).astype(
                np.float32, copy=False
            )
            corpus.matrix_model = model_id
            if len(vectors) > 2 * len(corpus.docs) + 1_000:
                keep = {d.key for c in self._corpora.values() for d in c.docs}
                self._vectors = {k: v for k, v in vectors.items() if k in keep}

    async def _load_cached(
        self, model_id: str, keys: list[str], into: dict[str, NDArray[np.float32]]
    ) -> None:
        import numpy as np  # numpy comes with the optional [search] extra

        if self.storage is None:
            return
        try:
            cached = await self.storage.get_vectors(model_id, keys)
        except StorageError as exc:
            self._warn_once("read", "cannot read the embedding cache (%s); recomputing", exc)
            return
        dim = self.embedder.dim
        for key, values in cached.items():
            vector = np.asarray(values, dtype=np.float32)
            if vector.shape == (dim,) and np.isfinite(vector).all():
                into[key] = vector

    async def _store(self, model_id: str, fresh: Mapping[str, NDArray[np.float32]]) -> None:
        if self.storage is None or not fresh:
            return
        try:
            await self.storage.put_vectors(
                model_id, {key: vector.tolist() for key, vector in fresh.items()}
            )
        except StorageError as exc:
            self._warn_once(
                "write", "cannot write the embedding cache (%s); vectors stay in memory", exc
            )

    def _warn_once(self, topic: str, message: str, *args: object) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            logger.warning(message, *args)

    # -- scoring ---------------------------------------------------------------------
    def _hybrid(
        self,
        corpus: _Corpus,
        query_vector: NDArray[np.float32],
        query: str,
        terms: Mapping[str, str],
        limit: int,
    ) -> list[SearchHit]:
        import numpy as np  # numpy comes with the optional [search] extra

        assert corpus.matrix is not None
        cosine = (corpus.matrix @ query_vector).astype(np.float64)
        weight = self.lexical_weight
        exact = set(corpus.index.name_matches(query)) if weight > 0 else set()
        lexical: dict[int, float] = {}
        combined = cosine.copy()
        eligible = cosine > 0
        if weight > 0 and terms:
            raw, matched = corpus.index.raw_scores(terms)
            best = max(raw.values(), default=0.0)
            for index, score in raw.items():
                lexical[index] = score / best * matched[index] / len(terms)
                combined[index] += weight * lexical[index]
                eligible[index] = True
        combined /= 1 + weight
        order_key = np.where(eligible, combined, -np.inf)
        for index in exact:
            order_key[index] = np.inf
        count = min(limit, int(np.count_nonzero(eligible)) + len(exact))
        if count <= 0:
            return []
        top = (
            np.argpartition(-order_key, count - 1)[:count]
            if count < len(order_key)
            else (np.arange(len(order_key)))
        )
        ranked = sorted(
            (int(i) for i in top if order_key[i] > -np.inf),
            key=lambda i: (i not in exact, -combined[i], corpus.docs[i].id),
        )
        hits: list[SearchHit] = []
        for index in ranked:
            why = f"semantic {cosine[index]:.2f}"
            if index in lexical:
                why += f" + words {lexical[index]:.2f}: {corpus.index.explain(index, terms)}"
            if index in exact:
                why = f"exact name match; {why}"
            score = 1.0 if index in exact else max(0.0, float(combined[index]))
            hits.append(SearchHit(id=corpus.docs[index].id, score=round(score, 6), why=why))
        return hits


_WORD_RUN: Final = re.compile(r"[^\W_]+")
_OPENERS: Final = re.compile(
    r"^\s*(?:(?:please|pls|hey|hi|ok|so)\b[\s,]*)*"
    r"(?:(?:can|could|would|will) you\s+"
    r"|(?:how|where) (?:do|can|should|would) (?:i|we)\s+"
    r"|i(?:'d| would)? (?:need|want|like|have) to\s+"
    r"|help me(?: to)?\s+"
    r"|is there (?:a|any) (?:way|workflow|tool|function) to\s+"
    r"|let'?s\s+)*",
    re.IGNORECASE,
)


def query_text(query: str, fixes: Mapping[str, str]) -> str:
    """What the model embeds for ``query``: misspelt words replaced, openers dropped.

    Openers (``please``, ``how do I``, ``I need to``, ``can you``...) say that
    something is asked, not what: the model otherwise ranks by them too (recall@1
    on the tuning queries fell from 0.88 to 0.85 with such openers added, and
    came back when they were dropped). The query is kept whole when nothing else
    would remain.
    """
    text = _OPENERS.sub("", query, count=1) or query
    if not fixes:
        return text
    return _WORD_RUN.sub(lambda m: fixes.get(m.group().lower(), m.group()), text)


def default_ranker(storage: StorageBackend | None = None) -> HybridRanker:
    """The ranker a session uses unless given one: hybrid, lexical until a model loads.

    The model comes from ``PY_CODE_MODE_EMBEDDING_MODEL`` or the default; when it
    cannot be loaded (no ``fastembed``, offline, bad directory) every search is
    lexical and the reason is logged once.
    """
    return HybridRanker(storage)
