"""Lexical ranking (BM25 over weighted fields) for tool and workflow search.

Standard library only. It is the ranking used when no embedding model can be
loaded, and the keyword half of the semantic + lexical combination in
:mod:`py_code_mode.search.semantic`. The one implementation is
:class:`LexicalIndex`: documents are tokenised when it is built and each query
term's scores are kept once computed, so searching the same documents again is
cheap. :func:`lexical_rank` is the one-shot form, and :class:`LexicalIndexCache`
keeps the index of a library that is handed over whole on every search.

Tokens: text is split on anything that is not a letter or digit, then on
snake_case and camelCase boundaries (``fetch_json``, ``fetchJson`` and
``FetchJSON`` all give ``fetch``, ``json``; an acronym's plural like ``URLs``
gives ``url``), lowercased, and lightly stemmed by :func:`stem`. A few English
stop words are dropped (from the query only when it has other words).

Score: for each query term ``t`` (counted once) and document field ``f``::

    idf(t) * weight(f) * tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(f) / avglen(f)))

summed over terms and fields, with ``idf(t) = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))``
(``n_t``: documents containing ``t`` in any field, so idf stays positive),
:data:`K1` = 1.2 and :data:`B` = 0.75. Default field weights: name 3, description 2,
parameters 1, source 0.5; other fields 1.

Typos: a query word of 4 to 24 ASCII letters whose stem no document holds (the
first eight such words of a query) is replaced by a word of the documents'
descriptive fields (weight 1 or more: not the source) one edit away (a letter
dropped, added, changed, or two swapped), the one most documents hold.
``known`` words (the embedding model's own vocabulary, when there is one) are
never replaced, and a word with no such neighbour in the documents may take the
one neighbour it has in ``known``. So
``downlaod`` finds ``download`` while ``sounds`` stays ``sounds``.

Normalisation: scores are divided by the best raw score of the query, so the
best hit has 1.0 and the others are their fraction of it (max normalisation, in
0..1). A document whose id equals the query (ignoring case, ``_``, ``-`` and
spaces) is an exact name match: it gets 1.0 and ranks before everything else.
Ties are broken by id, so results are deterministic.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from py_code_mode.errors import ConfigError

__all__ = [
    "DEFAULT_FIELD_WEIGHTS",
    "K1",
    "B",
    "LexicalIndex",
    "LexicalIndexCache",
    "SearchDocument",
    "SearchHit",
    "lexical_rank",
    "merge_field_weights",
    "query_terms",
    "stem",
    "tokenize",
]

K1: Final = 1.2
B: Final = 0.75

DEFAULT_FIELD_WEIGHTS: Final[Mapping[str, float]] = MappingProxyType(
    {"name": 3.0, "callables": 2.5, "description": 2.0, "parameters": 1.0, "source": 0.5}
)
_OTHER_FIELD_WEIGHT: Final = 1.0

STOP_WORDS: Final = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "how", "i", "in", "is"}
    | {"it", "me", "my", "of", "on", "or", "the", "this", "that", "to", "what", "with"}
)

_RUN = re.compile(r"[^\W_]+")
_ASCII_PART = re.compile(r"[A-Z]{2,}s(?![a-z])|[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_NAME_NOISE = re.compile(r"[\s_\-]+")
_UNDOUBLED: Final = frozenset("lsz")
_LETTERS: Final = "abcdefghijklmnopqrstuvwxyz"
_MIN_TYPO_LENGTH: Final = 4
_MAX_TYPO_LENGTH: Final = 24  # a word's edits grow with its length: huge words are not typos
_MAX_TYPO_WORDS: Final = 8  # at most this many words of one query are looked at
_MAX_REMEMBERED: Final = 4_096  # corrections kept per index, since queries repeat


@dataclass(frozen=True)
class SearchDocument:
    """Something to rank: an id (a tool or workflow name) and named text fields."""

    id: str
    fields: Mapping[str, str]


@dataclass(frozen=True)
class SearchHit:
    """A ranked document.

    Attributes:
        id: The document's id.
        score: 0..1; 1.0 for the best hit (see the module docstring).
        why: Which query terms matched in which fields, for humans and agents.
    """

    id: str
    score: float
    why: str


def stem(word: str) -> str:
    """Strip a few English endings so that word forms meet; lowercase input expected.

    Rules, in order: ``-ies`` -> ``-y`` (queries -> query); a plural ``-s``
    (not ``-ss``, ``-us``, ``-is``; ``-sses`` -> ``-ss``); ``-ing`` / ``-ed`` when
    at least four letters remain, undoubling a final consonant (running -> run);
    a final ``-e`` in words of five letters or more (parse, parsing, parsed ->
    pars). Crude on purpose: query and documents go through the same rules, so
    the stems only need to agree with each other, not be words.
    """
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            if word[-1] == word[-2] and word[-1] not in _UNDOUBLED and word[-1].isalpha():
                word = word[:-1]
            break
    if len(word) >= 5 and word.endswith("e"):
        word = word[:-1]
    return word


def _words(text: str) -> list[str]:
    words: list[str] = []
    for run in _RUN.findall(text):
        if run.isascii():
            for part in _ASCII_PART.findall(run):
                if part[-1] == "s" and part[:-1].isupper():  # an acronym's plural: URLs, IDs
                    part = part[:-1]  # noqa: PLW2901
                words.append(part.lower())
        else:
            words.append(run.lower())
    return words


def tokenize(text: str) -> list[str]:
    """Split, lowercase, drop stop words and stem (see the module docstring)."""
    return [stem(word) for word in _words(text) if word not in STOP_WORDS]


def query_terms(query: str) -> dict[str, str]:
    """The distinct terms of a query: stem -> the first query word that produced it.

    Stop words are dropped unless the query has nothing else. The words are what
    ``why`` shows, since a stem (``pars``) reads badly.
    """
    words = _words(query)
    kept = [w for w in words if w not in STOP_WORDS] or words
    terms: dict[str, str] = {}
    for word in kept:
        terms.setdefault(stem(word), word)
    return terms


def _normalise_name(text: str) -> str:
    return _NAME_NOISE.sub("", text).casefold()


def merge_field_weights(field_weights: Mapping[str, float] | None = None) -> Mapping[str, float]:
    """:data:`DEFAULT_FIELD_WEIGHTS` overridden by ``field_weights``, read-only.

    Raises:
        ConfigError: A weight is negative or not a number.
    """
    weights = dict(DEFAULT_FIELD_WEIGHTS)
    weights.update(field_weights or {})
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
            raise ConfigError(f"field weight of {name!r} must be a number >= 0, got {weight!r}")
    return MappingProxyType(weights)


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")


def _edits(word: str) -> set[str]:
    """Every string one edit from ``word``: a letter dropped, added, changed, or two swapped."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    edits = {a + b[1:] for a, b in splits if b}
    edits |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    edits |= {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    edits |= {a + c + b for a, b in splits for c in _LETTERS}
    edits.discard(word)
    return edits


def _one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are one edit apart (see :func:`_edits`)."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) < len(b):
        return a[i:] == b[i + 1 :]
    return a[i + 1 :] == b[i + 1 :] or (
        i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]
    )


class _Spelling:
    """The words of the documents' descriptive fields, findable from a word one edit away.

    Each word is filed under itself and every string one deletion from it; two
    words one edit apart share one of those keys, so a lookup costs a word's
    length in dictionary probes instead of generating every edit.
    """

    __slots__ = ("by_deletion", "counts", "found")

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self.by_deletion: dict[str, list[str]] = {}
        for word in counts:
            for key in {word, *_deletions(word)}:
                self.by_deletion.setdefault(key, []).append(word)
        self.found: dict[str, str | None] = {}

    def nearest(self, word: str) -> str | None:
        """The most common document word one edit from ``word`` (ties: alphabetical)."""
        if word in self.found:
            return self.found[word]
        near = {
            candidate
            for key in (word, *_deletions(word))
            for candidate in self.by_deletion.get(key, ())
            if _one_edit(word, candidate)
        }
        best = min(near, key=lambda w: (-self.counts[w], w)) if near else None
        if len(self.found) >= _MAX_REMEMBERED:
            self.found.clear()
        self.found[word] = best
        return best


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


class _Tokenised:
    """One document's weighted fields as term counts and lengths."""

    __slots__ = ("counts", "fields", "spelled", "terms")

    def __init__(self, fields: Mapping[str, str], weights: Mapping[str, float]) -> None:
        self.fields = dict(fields)  # a copy: a caller may change its dict after indexing
        self.counts: dict[str, tuple[Counter[str], int]] = {}
        spelled: set[str] = set()
        for name, text in self.fields.items():
            weight = weights.get(name, _OTHER_FIELD_WEIGHT)
            if not text or weight <= 0:
                continue
            words = _words(text)
            if weight >= 1:
                spelled.update(w for w in words if len(w) >= _MIN_TYPO_LENGTH and w.isalpha())
            tokens = [stem(word) for word in words if word not in STOP_WORDS]
            if tokens:
                self.counts[name] = (Counter(tokens), len(tokens))
        self.terms = frozenset(t for counter, _ in self.counts.values() for t in counter)
        self.spelled = frozenset(spelled)


class LexicalIndex:
    """BM25 statistics of one set of documents: tokenised once, ranked against many times.

    Documents are addressed by their position in ``documents``. Per-term scores
    are computed on first use and kept, so a repeated query term costs a lookup.

    Args:
        documents: What to rank.
        field_weights: Weights by field name, merged over
            :data:`DEFAULT_FIELD_WEIGHTS`; unlisted fields weigh 1, a weight of 0
            ignores the field.
        reuse: An earlier index (with the same weights) whose tokens are taken
            for documents with the same id and fields, so that a library which
            gained or changed one document re-tokenises only that one.

    Raises:
        ConfigError: A field weight is negative or not a number.
    """

    def __init__(
        self,
        documents: Sequence[SearchDocument],
        field_weights: Mapping[str, float] | None = None,
        *,
        reuse: LexicalIndex | None = None,
    ) -> None:
        self.weights = merge_field_weights(field_weights)
        self.ids: tuple[str, ...] = tuple(document.id for document in documents)
        earlier = reuse._by_id if reuse is not None and reuse.weights == self.weights else {}
        self._docs: list[_Tokenised] = []
        for document in documents:
            known = earlier.get(document.id)
            if known is None or known.fields != document.fields:
                known = _Tokenised(document.fields, self.weights)
            self._docs.append(known)
        self._by_id: dict[str, _Tokenised] = dict(zip(self.ids, self._docs, strict=True))
        total: Counter[str] = Counter()
        having: Counter[str] = Counter()
        for doc in self._docs:
            for name, (_, length) in doc.counts.items():
                total[name] += length
                having[name] += 1
        self._average = {name: total[name] / having[name] for name in total}
        self._by_name: dict[str, list[int]] = {}
        for position, doc_id in enumerate(self.ids):
            self._by_name.setdefault(_normalise_name(doc_id), []).append(position)
        self._vocabulary = frozenset[str]().union(*(doc.terms for doc in self._docs))
        self._postings: dict[str, list[tuple[int, float]]] = {}
        self._spelling: _Spelling | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def rank(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        """Rank the documents against ``query``; only documents that match are returned.

        Args:
            query: Free text, e.g. ``"fetch json from a url"``.
            limit: Most hits to return.

        Returns:
            Hits, best first (exact name match first, then by score, then by id).

        Raises:
            ConfigError: ``limit`` is not a positive integer.
        """
        _check_limit(limit)
        terms = self.with_corrections(query_terms(query), self.corrections(query))
        raw, _ = self.raw_scores(terms)
        exact = set(self.name_matches(query))
        best = max(raw.values(), default=0.0)
        ranked = heapq.nsmallest(
            limit,
            raw.keys() | exact,
            key=lambda i: (i not in exact, -raw.get(i, 0.0), self.ids[i]),
        )
        hits: list[SearchHit] = []
        for position in ranked:
            parts = ["exact name match"] if position in exact else []
            explained = self.explain(position, terms)
            if explained:
                parts.append(explained)
            score = 1.0 if position in exact else round(raw[position] / best, 6)
            hits.append(SearchHit(id=self.ids[position], score=score, why="; ".join(parts)))
        return hits

    def corrections(self, query: str, known: AbstractSet[str] = frozenset()) -> dict[str, str]:
        """Misspelt query words and their corrections, e.g. ``{"downlaod": "download"}``.

        See the module docstring for the rule.

        Args:
            query: Free text.
            known: Correctly spelt words that are never replaced (lowercase), and
                the last resort for a word with no neighbour in the documents.
        """
        fixes: dict[str, str] = {}
        looked_at = 0
        for word in dict.fromkeys(_words(query)):
            if (
                not _MIN_TYPO_LENGTH <= len(word) <= _MAX_TYPO_LENGTH
                or not word.isascii()
                or not word.isalpha()
                or word in STOP_WORDS
                or word in known
                or stem(word) in self._vocabulary
            ):
                continue
            looked_at += 1
            if looked_at > _MAX_TYPO_WORDS:
                break
            nearest = self._spelling_index().nearest(word)
            if nearest is not None:
                fixes[word] = nearest
            elif known:
                outside = [w for w in _edits(word) if w in known]
                if len(outside) == 1:
                    fixes[word] = outside[0]
        return fixes

    @staticmethod
    def with_corrections(terms: Mapping[str, str], fixes: Mapping[str, str]) -> dict[str, str]:
        """``terms`` (as from :func:`query_terms`) plus the stems of the corrected words."""
        merged = dict(terms)
        for fixed in fixes.values():
            merged.setdefault(stem(fixed), fixed)
        return merged

    def _spelling_index(self) -> _Spelling:
        """The documents' words for typo correction; built on first use."""
        spelling = self._spelling
        if spelling is None:
            spelling = _Spelling(Counter(word for doc in self._docs for word in doc.spelled))
            self._spelling = spelling
        return spelling

    def raw_scores(self, terms: Iterable[str]) -> tuple[dict[int, float], dict[int, int]]:
        """Raw BM25 score and number of matched terms, by position, of the matching documents.

        Args:
            terms: Stemmed terms, e.g. the keys of :func:`query_terms`; each counts once.
        """
        raw: dict[int, float] = {}
        matched: dict[int, int] = {}
        count = len(self._docs)
        for term in dict.fromkeys(terms):
            postings = self._term_postings(term)
            if not postings:
                continue
            frequency = len(postings)
            idf = math.log(1 + (count - frequency + 0.5) / (frequency + 0.5))
            for position, contribution in postings:
                raw[position] = raw.get(position, 0.0) + idf * contribution
                matched[position] = matched.get(position, 0) + 1
        return raw, matched

    def name_matches(self, query: str) -> list[int]:
        """Positions of the documents named ``query`` (ignoring case, ``_``, ``-`` and spaces)."""
        target = _normalise_name(query)
        return list(self._by_name.get(target, ())) if target else []

    def explain(self, position: int, terms: Mapping[str, str]) -> str:
        """Which query words matched in which fields of one document, e.g. ``json (name)``.

        Args:
            position: The document's position.
            terms: Stem -> query word, as returned by :func:`query_terms`.
        """
        counts = self._docs[position].counts
        parts: list[str] = []
        for term, word in terms.items():
            fields = [name for name, (counter, _) in counts.items() if term in counter]
            if fields:
                parts.append(f"{word} ({', '.join(fields)})")
        return "; ".join(parts)

    def _term_postings(self, term: str) -> list[tuple[int, float]]:
        """(position, field-weighted BM25 saturation) of every document holding ``term``."""
        cached = self._postings.get(term)
        if cached is not None:
            return cached
        if term not in self._vocabulary:  # not kept: the words searched for are unbounded
            return []
        found: list[tuple[int, float]] = []
        for position, doc in enumerate(self._docs):
            if term not in doc.terms:
                continue
            contribution = 0.0
            for name, (counter, length) in doc.counts.items():
                tf = counter.get(term, 0)
                if tf:
                    norm = 1 - B + B * length / self._average[name]
                    saturation = tf * (K1 + 1) / (tf + K1 * norm)
                    contribution += self.weights.get(name, _OTHER_FIELD_WEIGHT) * saturation
            found.append((position, contribution))
        self._postings[term] = found
        return found


def _fingerprint(documents: Sequence[SearchDocument]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    return tuple((document.id, tuple(document.fields.items())) for document in documents)


class LexicalIndexCache:
    """The :class:`LexicalIndex` of the latest set of documents, rebuilt only when it changes.

    For rankers that are handed the whole library on every search: an unchanged
    library is compared, not re-tokenised, and a changed one re-tokenises only
    the documents that changed.

    Args:
        field_weights: As for :class:`LexicalIndex`.

    Raises:
        ConfigError: A field weight is negative or not a number.
    """

    def __init__(self, field_weights: Mapping[str, float] | None = None) -> None:
        self.weights = merge_field_weights(field_weights)
        self._latest: tuple[tuple[tuple[str, tuple[Any, ...]], ...], LexicalIndex] | None = None

    def index(self, documents: Sequence[SearchDocument]) -> LexicalIndex:
        """The index of ``documents``; the cached one when their ids and fields are unchanged."""
        key = _fingerprint(documents)
        latest = self._latest
        if latest is not None and latest[0] == key:
            return latest[1]
        index = LexicalIndex(documents, self.weights, reuse=latest[1] if latest else None)
        self._latest = (key, index)  # one assignment: a concurrent reader sees a matching pair
        return index


def lexical_rank(
    query: str,
    documents: Sequence[SearchDocument],
    *,
    limit: int = 10,
    field_weights: Mapping[str, float] | None = None,
) -> list[SearchHit]:
    """Rank ``documents`` against ``query`` once; only documents that match are returned.

    Tokenises every document: to search the same documents again, keep a
    :class:`LexicalIndex` (or a :class:`LexicalIndexCache`) instead.

    Args:
        query: Free text, e.g. ``"fetch json from a url"``.
        documents: What to rank.
        limit: Most hits to return.
        field_weights: Weights by field name, merged over
            :data:`DEFAULT_FIELD_WEIGHTS`; unlisted fields weigh 1, a weight of 0
            ignores the field.

    Returns:
        Hits, best first (exact name match first, then by score, then by id).

    Raises:
        ConfigError: ``limit`` is not a positive integer or a weight is negative.
    """
    return LexicalIndex(documents, field_weights).rank(query, limit=limit)
