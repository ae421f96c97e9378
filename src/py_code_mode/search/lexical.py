"""Lexical ranking (BM25 over weighted fields) for tool and workflow search.

Standard library only. It is the ranking used when no embedding model can be
loaded, and the keyword half of a later semantic + lexical combination.

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

Normalisation: scores are divided by the best raw score of the query, so the
best hit has 1.0 and the others are their fraction of it (max normalisation, in
0..1). A document whose id equals the query (ignoring case, ``_``, ``-`` and
spaces) is an exact name match: it gets 1.0 and ranks before everything else.
Ties are broken by id, so results are deterministic.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from py_code_mode.errors import ConfigError

__all__ = [
    "DEFAULT_FIELD_WEIGHTS",
    "K1",
    "B",
    "SearchDocument",
    "SearchHit",
    "lexical_rank",
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


def _query_terms(query: str) -> dict[str, str]:
    """Stem -> the first query word that produced it (shown in ``why``)."""
    words = _words(query)
    kept = [w for w in words if w not in STOP_WORDS] or words
    terms: dict[str, str] = {}
    for word in kept:
        terms.setdefault(stem(word), word)
    return terms


def _normalise_name(text: str) -> str:
    return _NAME_NOISE.sub("", text).casefold()


def lexical_rank(
    query: str,
    documents: Sequence[SearchDocument],
    *,
    limit: int = 10,
    field_weights: Mapping[str, float] | None = None,
) -> list[SearchHit]:
    """Rank ``documents`` against ``query``; only documents that match are returned.

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
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    weights = dict(DEFAULT_FIELD_WEIGHTS)
    weights.update(field_weights or {})
    for name, weight in weights.items():
        if not weight >= 0:
            raise ConfigError(f"field weight of {name!r} must be >= 0, got {weight!r}")

    terms = _query_terms(query)
    target = _normalise_name(query)
    if not terms and not target:
        return []

    # Per document and field: term frequencies and length.
    counted: list[dict[str, tuple[Counter[str], int]]] = []
    total_length: Counter[str] = Counter()
    with_field: Counter[str] = Counter()
    document_frequency: Counter[str] = Counter()
    for document in documents:
        fields: dict[str, tuple[Counter[str], int]] = {}
        seen: set[str] = set()
        for field_name, text in document.fields.items():
            if weights.get(field_name, _OTHER_FIELD_WEIGHT) <= 0 or not text:
                continue
            tokens = tokenize(text)
            if not tokens:
                continue
            fields[field_name] = (Counter(tokens), len(tokens))
            total_length[field_name] += len(tokens)
            with_field[field_name] += 1
            seen.update(tokens)
        counted.append(fields)
        document_frequency.update(t for t in terms if t in seen)

    count = len(documents)
    idf = {
        t: math.log(1 + (count - document_frequency[t] + 0.5) / (document_frequency[t] + 0.5))
        for t in terms
    }
    scored: list[tuple[bool, float, str, str]] = []
    for document, fields in zip(documents, counted, strict=True):
        raw = 0.0
        matched: dict[str, list[str]] = {}
        for term in terms:
            for field_name, (frequencies, length) in fields.items():
                tf = frequencies.get(term, 0)
                if not tf:
                    continue
                average = total_length[field_name] / with_field[field_name]
                saturation = tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))
                raw += idf[term] * weights.get(field_name, _OTHER_FIELD_WEIGHT) * saturation
                matched.setdefault(term, []).append(field_name)
        exact = bool(target) and _normalise_name(document.id) == target
        if raw > 0 or exact:
            parts = [f"{terms[t]} ({', '.join(fields_)})" for t, fields_ in matched.items()]
            if exact:
                parts.insert(0, "exact name match")
            scored.append((exact, raw, document.id, "; ".join(parts)))

    best = max((raw for _, raw, _, _ in scored), default=0.0)
    scored.sort(key=lambda item: (not item[0], -item[1], item[2]))
    return [
        SearchHit(
            id=doc_id,
            score=1.0 if exact else round(raw / best, 6),
            why=why,
        )
        for exact, raw, doc_id, why in scored[:limit]
    ]
