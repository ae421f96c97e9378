"""Hybrid search: meaning (sentence embeddings) combined with words (BM25).

Score of a document for a query, when the embedding model is loaded::

    (cosine + LEXICAL_WEIGHT * lexical * coverage) / (1 + LEXICAL_WEIGHT)

``cosine`` compares the query with the document's name, callables (tools) and
description (the start of its source when it has no description). ``lexical`` is the BM25 score of
:mod:`py_code_mode.search.lexical` over all fields, source included, relative to
the best lexical hit (0..1), and ``coverage`` the share of query words the
document contains. Multiplying the two keeps a single common word (``file``,
``url``) from outvoting meaning, while a rare identifier that only the source
knows (``pytesseract``) still lifts its workflow. A document whose name is the
query ranks first whatever the scores. The weight (0.25) was tuned on the
labelled set in ``tests/search/eval_set.py``: recall stays flat from 0.15 to 0.3
and drops outside.

Until the model is loaded (or when it cannot be), ranking is lexical and every
``why`` says so. Documents with a negative cosine and no word in common with
the query are left out.

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
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from py_code_mode.errors import ConfigError, StorageError
from py_code_mode.search.embeddings import Embedder, get_embedder
from py_code_mode.search.lexical import (
    DEFAULT_FIELD_WEIGHTS,
    K1,
    B,
    SearchDocument,
    SearchHit,
    _normalise_name,
    _query_terms,
    tokenize,
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
]

logger = logging.getLogger(__name__)

DEFAULT_LEXICAL_WEIGHT: Final = 0.25
DEFAULT_LOAD_WAIT: Final = 2.0
DEFAULT_EMBED_FIELDS: Final = ("name", "callables", "description")
_EMBED_TEXT_VERSION: Final = "doc-v1"
_MAX_EMBED_CHARS: Final = 1_000
_SOURCE_CHARS_WITHOUT_DESCRIPTION: Final = 300
_OTHER_FIELD_WEIGHT: Final = 1.0
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
    """A document as first seen: its tokens, embedded text and cache key."""

    __slots__ = ("counts", "embed_text", "fields", "id", "key", "name", "terms")

    def __init__(self, document: SearchDocument, embed_fields: Sequence[str]) -> None:
        self.id = document.id
        self.fields = dict(document.fields)
        self.name = _normalise_name(document.id)
        self.counts: dict[str, tuple[Counter[str], int]] = {}
        for field, text in self.fields.items():
            tokens = tokenize(text) if text else []
            if tokens:
                self.counts[field] = (Counter(tokens), len(tokens))
        self.terms = frozenset(t for counter, _ in self.counts.values() for t in counter)
        self.embed_text = embed_text(document, embed_fields)
        self.key = embedding_key(self.embed_text)


class _Corpus:
    """BM25 statistics of one set of documents, with postings built per query term."""

    def __init__(self, docs: list[_Doc], weights: Mapping[str, float]) -> None:
        self.docs = docs
        self.weights = weights
        total: Counter[str] = Counter()
        having: Counter[str] = Counter()
        for doc in docs:
            for field, (_, length) in doc.counts.items():
                if weights.get(field, _OTHER_FIELD_WEIGHT) > 0:
                    total[field] += length
                    having[field] += 1
        self.average = {field: total[field] / having[field] for field in total}
        self.by_name: dict[str, list[int]] = {}
        for index, doc in enumerate(docs):
            self.by_name.setdefault(doc.name, []).append(index)
        self._postings: dict[str, list[tuple[int, float]]] = {}
        self.matrix: NDArray[np.float32] | None = None
        self.matrix_model: str | None = None

    def postings(self, term: str) -> list[tuple[int, float]]:
        """(document index, field-weighted BM25 saturation) for every doc holding ``term``."""
        cached = self._postings.get(term)
        if cached is not None:
            return cached
        found: list[tuple[int, float]] = []
        for index, doc in enumerate(self.docs):
            if term not in doc.terms:
                continue
            contribution = 0.0
            for field, (counter, length) in doc.counts.items():
                tf = counter.get(term, 0)
                weight = self.weights.get(field, _OTHER_FIELD_WEIGHT)
                if not tf or weight <= 0:
                    continue
                norm = 1 - B + B * length / self.average[field]
                contribution += weight * tf * (K1 + 1) / (tf + K1 * norm)
            if contribution > 0:
                found.append((index, contribution))
        self._postings[term] = found
        return found

    def lexical(self, terms: Mapping[str, str]) -> tuple[dict[int, float], dict[int, int]]:
        """Raw BM25 score and number of matched query terms, by document index."""
        raw: dict[int, float] = {}
        matched: dict[int, int] = {}
        count = len(self.docs)
        for term in terms:
            postings = self.postings(term)
            if not postings:
                continue
            frequency = len(postings)
            idf = math.log(1 + (count - frequency + 0.5) / (frequency + 0.5))
            for index, contribution in postings:
                raw[index] = raw.get(index, 0.0) + idf * contribution
                matched[index] = matched.get(index, 0) + 1
        return raw, matched

    def explain(self, index: int, terms: Mapping[str, str]) -> str:
        """Which query words matched in which fields of one document."""
        doc = self.docs[index]
        parts = []
        for term, word in terms.items():
            fields = [
                f
                for f, (counter, _) in doc.counts.items()
                if term in counter and self.weights.get(f, _OTHER_FIELD_WEIGHT) > 0
            ]
            if fields:
                parts.append(f"{word} ({', '.join(fields)})")
        return "; ".join(parts)


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
            the first search, or with :meth:`start`.

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
        weights = dict(DEFAULT_FIELD_WEIGHTS)
        weights.update(field_weights or {})
        for field, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
                raise ConfigError(f"field weight of {field!r} must be >= 0, got {weight!r}")
        if isinstance(embed_fields, str) or not embed_fields:
            raise ConfigError(f"embed_fields must be a list of field names, got {embed_fields!r}")
        self.storage = storage
        self.embedder = embedder if embedder is not None else get_embedder()
        self.lexical_weight = float(lexical_weight)
        self.field_weights: Mapping[str, float] = MappingProxyType(weights)
        self.embed_fields = tuple(embed_fields)
        self.load_wait = float(load_wait)
        self._docs: dict[tuple[str, tuple[str, ...]], _Doc] = {}
        self._corpora: OrderedDict[tuple[_Doc, ...], _Corpus] = OrderedDict()
        self._vectors: dict[str, NDArray[np.float32]] = {}
        self._vectors_model: str | None = None
        self._fill_lock = asyncio.Lock()
        self._warned: set[str] = set()

    # -- public ----------------------------------------------------------------------
    def start(self) -> None:
        """Begin loading the model in the background; returns at once."""
        self.embedder.start_loading()

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
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"limit must be a positive integer, got {limit!r}")
        if not isinstance(query, str):
            raise ConfigError(f"query must be a string, got {type(query).__name__}")
        terms = _query_terms(query)
        target = _normalise_name(query)
        if not documents or (not terms and not target):
            return []
        corpus = self._corpus(documents)
        if not terms:  # punctuation only: nothing to mean, only a name to match
            exact = corpus.by_name.get(target, [])
            return [SearchHit(corpus.docs[i].id, 1.0, "exact name match") for i in exact[:limit]]
        note = await self._model_note()
        if note is None:
            try:
                await self._fill_vectors(corpus)
                query_vector = await self.embedder.embed_query(query)
            except Exception as exc:  # noqa: BLE001 - any model failure degrades to lexical
                self._warn_once(
                    "embed",
                    "semantic search failed, ranking lexically for now: %s: %s",
                    type(exc).__name__,
                    exc,
                )
                note = "lexical only, embedding failed"
            else:
                return self._hybrid(corpus, query_vector, terms, target, limit)
        return self._lexical(corpus, terms, target, limit, note)

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
            corpus = _Corpus(docs, self.field_weights)
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
        import numpy as np

        model_id = self.embedder.model_id
        if corpus.matrix is not None and corpus.matrix_model == model_id:
            return
        async with self._fill_lock:
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
            corpus.matrix = np.stack([vectors[d.key] for d in corpus.docs]).astype(np.float32)
            corpus.matrix_model = model_id
            if len(vectors) > 2 * len(corpus.docs) + 1_000:
                keep = {d.key for c in self._corpora.values() for d in c.docs}
                self._vectors = {k: v for k, v in vectors.items() if k in keep}

    async def _load_cached(
        self, model_id: str, keys: list[str], into: dict[str, NDArray[np.float32]]
    ) -> None:
        import numpy as np

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
        terms: Mapping[str, str],
        target: str,
        limit: int,
    ) -> list[SearchHit]:
        import numpy as np

        assert corpus.matrix is not None
        cosine = (corpus.matrix @ query_vector).astype(np.float64)
        weight = self.lexical_weight
        exact = set(corpus.by_name.get(target, ())) if target and weight > 0 else set()
        lexical: dict[int, float] = {}
        combined = cosine.copy()
        eligible = cosine > 0
        if weight > 0 and terms:
            raw, matched = corpus.lexical(terms)
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
                why += f" + words {lexical[index]:.2f}: {corpus.explain(index, terms)}"
            if index in exact:
                why = f"exact name match; {why}"
            score = 1.0 if index in exact else max(0.0, float(combined[index]))
            hits.append(SearchHit(id=corpus.docs[index].id, score=round(score, 6), why=why))
        return hits

    def _lexical(
        self, corpus: _Corpus, terms: Mapping[str, str], target: str, limit: int, note: str
    ) -> list[SearchHit]:
        raw, _ = corpus.lexical(terms)
        exact = set(corpus.by_name.get(target, ())) if target else set()
        best = max(raw.values(), default=0.0)
        candidates = list(set(raw) | exact)
        candidates.sort(key=lambda i: (i not in exact, -raw.get(i, 0.0), corpus.docs[i].id))
        hits: list[SearchHit] = []
        for index in candidates[:limit]:
            parts = [note]
            if index in exact:
                parts.append("exact name match")
            explained = corpus.explain(index, terms)
            if explained:
                parts.append(explained)
            score = 1.0 if index in exact else raw[index] / best
            hits.append(
                SearchHit(id=corpus.docs[index].id, score=round(score, 6), why="; ".join(parts))
            )
        return hits


def default_ranker(storage: StorageBackend | None = None) -> HybridRanker:
    """The ranker a session uses unless given one: hybrid, lexical until a model loads.

    The model comes from ``PY_CODE_MODE_EMBEDDING_MODEL`` or the default; when it
    cannot be loaded (no ``fastembed``, offline, bad directory) every search is
    lexical and the reason is logged once.
    """
    return HybridRanker(storage)
