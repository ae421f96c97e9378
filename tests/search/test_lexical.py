from __future__ import annotations

import pytest

from py_code_mode.errors import ConfigError
from py_code_mode.search.lexical import (
    LexicalIndex,
    LexicalIndexCache,
    SearchDocument,
    lexical_rank,
    query_terms,
    stem,
    tokenize,
)
from py_code_mode.search.ranker import LexicalRanker


def doc(id_: str, **fields: str) -> SearchDocument:
    return SearchDocument(id=id_, fields=fields)


DOCS = [
    doc("fetch_json", name="fetch_json", description="Fetch a URL and parse the JSON body"),
    doc("curl", name="curl", description="Transfer data from or to URLs"),
    doc("jq", name="jq", description="Filter JSON documents"),
    doc("word_count", name="word_count", description="Count words in a text file"),
]


def test_tokenize_splits_snake_case_camel_case_and_acronyms() -> None:
    assert tokenize("fetch_json") == ["fetch", "json"]
    assert tokenize("fetchJson") == ["fetch", "json"]
    assert tokenize("FetchJSON") == ["fetch", "json"]
    assert tokenize("HTTPServer") == ["http", "server"]
    assert tokenize("list the URLs, now!") == ["list", "url", "now"]


def test_tokenize_drops_stop_words_and_keeps_digits() -> None:
    assert tokenize("the size of a utf8 file") == ["size", "utf", "8", "file"]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("files", "file"),
        ("queries", "query"),
        ("status", "status"),
        ("class", "class"),
        ("processes", "process"),
        ("fetching", "fetch"),
        ("fetched", "fetch"),
        ("running", "run"),
        ("string", "string"),
        ("parse", "pars"),
        ("parsing", "pars"),
        ("parsed", "pars"),
    ],
)
def test_stem_merges_common_word_forms(word: str, expected: str) -> None:
    assert stem(word) == expected


def test_word_forms_match_each_other() -> None:
    hits = lexical_rank("parsing urls", DOCS)
    assert hits[0].id == "fetch_json"


def test_exact_name_match_ranks_first_ignoring_case_and_separators() -> None:
    docs = [
        doc("word_count", name="word_count", description="count"),
        doc("counter", name="counter", description="word count word count word count"),
    ]
    for query in ("word_count", "Word Count", "word-count", "WORD_COUNT"):
        hits = lexical_rank(query, docs)
        assert hits[0].id == "word_count"
        assert hits[0].score == 1.0
        assert hits[0].why.startswith("exact name match")


def test_name_matches_outweigh_description_matches() -> None:
    docs = [
        doc("a", name="convert", description="change units"),
        doc("b", name="units", description="convert things"),
    ]
    hits = lexical_rank("convert", docs)
    assert [h.id for h in hits] == ["a", "b"]


def test_only_matching_documents_are_returned() -> None:
    hits = lexical_rank("json", DOCS)
    assert {h.id for h in hits} == {"fetch_json", "jq"}
    assert lexical_rank("zebra", DOCS) == []
    assert lexical_rank("", DOCS) == []
    assert lexical_rank("  --- ", DOCS) == []


def test_scores_are_normalised_so_the_best_hit_is_one() -> None:
    hits = lexical_rank("json url", DOCS)
    assert hits[0].score == 1.0
    assert all(0 < h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_why_names_the_matched_terms_and_fields() -> None:
    hits = lexical_rank("fetch json", DOCS)
    top = hits[0]
    assert top.id == "fetch_json"
    assert "fetch (name, description)" in top.why
    assert "json (name, description)" in top.why
    assert hits[1].why == "json (description)"


def test_ties_are_ordered_by_id() -> None:
    docs = [doc(i, description="same words") for i in ("c", "a", "b")]
    hits = lexical_rank("words", docs)
    assert [h.id for h in hits] == ["a", "b", "c"]
    assert len({h.score for h in hits}) == 1


def test_ranking_is_deterministic() -> None:
    first = lexical_rank("count json text", DOCS)
    assert all(lexical_rank("count json text", list(DOCS)) == first for _ in range(5))


def test_rare_terms_count_more_than_common_ones() -> None:
    docs = [
        doc("a", description="data tool export"),
        doc("b", description="data tool"),
        doc("c", description="data tool"),
        doc("d", description="data parquet"),
    ]
    hits = lexical_rank("data parquet", docs)
    assert hits[0].id == "d"


def test_limit_caps_the_number_of_hits() -> None:
    docs = [doc(f"d{i}", description="match") for i in range(20)]
    assert len(lexical_rank("match", docs, limit=3)) == 3
    assert len(lexical_rank("match", docs)) == 10


@pytest.mark.parametrize("limit", [0, -1, True])
def test_a_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ConfigError, match="limit"):
        lexical_rank("json", DOCS, limit=limit)


def test_field_weights_merge_over_defaults_and_zero_ignores_a_field() -> None:
    docs = [doc("a", source="def parse(): pass"), doc("b", description="parse")]
    assert [h.id for h in lexical_rank("parse", docs)] == ["b", "a"]
    assert [h.id for h in lexical_rank("parse", docs, field_weights={"source": 10})] == ["a", "b"]
    assert [h.id for h in lexical_rank("parse", docs, field_weights={"source": 0})] == ["b"]


def test_fields_without_a_weight_count_with_weight_one() -> None:
    hits = lexical_rank("deploy", [doc("a", tags="deploy release")])
    assert [h.id for h in hits] == ["a"]
    assert hits[0].why == "deploy (tags)"


def test_negative_field_weight_is_refused() -> None:
    with pytest.raises(ConfigError, match="name"):
        lexical_rank("x", DOCS, field_weights={"name": -1})


def test_no_documents_gives_no_hits() -> None:
    assert lexical_rank("anything", []) == []


# -- the reusable index -------------------------------------------------------------------
def test_query_terms_map_stems_to_the_first_word_and_keep_lone_stop_words() -> None:
    assert query_terms("Parsing the URLs, parse again") == {
        "pars": "parsing",
        "url": "url",
        "again": "again",
    }
    assert query_terms("the of") == {"the": "the", "of": "of"}
    assert query_terms(" -- ") == {}


def test_an_index_ranks_exactly_like_lexical_rank() -> None:
    index = LexicalIndex(DOCS)
    for query in ("fetch json", "parsing urls", "word_count", "count json text", "", "zebra"):
        for limit in (1, 2, 10):
            assert index.rank(query, limit=limit) == lexical_rank(query, DOCS, limit=limit)


def test_an_index_exposes_raw_scores_name_matches_and_explanations() -> None:
    index = LexicalIndex(DOCS)
    terms = query_terms("fetch json")
    raw, matched = index.raw_scores(terms)
    assert len(index) == 4
    assert {index.ids[i] for i in raw} == {"fetch_json", "jq"}
    fetch_json = index.ids.index("fetch_json")
    assert matched[fetch_json] == 2
    assert raw[fetch_json] > raw[index.ids.index("jq")] > 0
    assert index.explain(fetch_json, terms) == "fetch (name, description); json (name, description)"
    assert index.explain(index.ids.index("curl"), terms) == ""
    assert index.name_matches("Fetch-JSON") == [fetch_json]
    assert index.name_matches("fetch") == []
    assert index.name_matches(" _ ") == []


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_an_index_refuses_a_limit_below_one(limit: int) -> None:
    with pytest.raises(ConfigError, match="limit"):
        LexicalIndex(DOCS).rank("json", limit=limit)


@pytest.mark.parametrize("weight", [-1.0, float("nan"), "high", True])
def test_an_index_and_a_cache_refuse_a_field_weight_that_is_not_a_number_at_least_zero(
    weight: object,
) -> None:
    with pytest.raises(ConfigError, match="field weight of 'name'"):
        LexicalIndex(DOCS, {"name": weight})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="field weight of 'name'"):
        LexicalIndexCache({"name": weight})  # type: ignore[dict-item]


def test_an_index_built_from_an_earlier_one_ranks_like_a_fresh_one() -> None:
    earlier = LexicalIndex(DOCS)
    earlier.rank("json words", limit=10)
    changed = [
        doc("fetch_json", name="fetch_json", description="Download a page as text"),
        *DOCS[1:],
        doc("yq", name="yq", description="Filter YAML and JSON documents"),
    ]
    for weights in (None, {"description": 5.0}):
        rebuilt = LexicalIndex(changed, weights, reuse=earlier)
        fresh = LexicalIndex(changed, weights)
        for query in ("json", "download page", "fetch", "filter documents", "words"):
            assert rebuilt.rank(query, limit=10) == fresh.rank(query, limit=10)


def test_the_cache_returns_the_same_index_while_the_documents_are_unchanged() -> None:
    cache = LexicalIndexCache()
    first = cache.index(DOCS)
    copies = [doc(d.id, **dict(d.fields)) for d in DOCS]
    assert cache.index(copies) is first
    assert cache.index(DOCS[:3]) is not first


def test_the_cache_sees_added_removed_and_edited_documents() -> None:
    cache = LexicalIndexCache()
    fields = {"name": "csv_tool", "description": "Convert spreadsheets"}
    docs = [*DOCS, SearchDocument("csv_tool", fields)]
    assert [h.id for h in cache.index(docs).rank("spreadsheets", limit=5)] == ["csv_tool"]
    fields["description"] = "Summarise logs"  # edited in place after indexing
    assert cache.index(docs).rank("spreadsheets", limit=5) == []
    assert [h.id for h in cache.index(docs).rank("logs", limit=5)] == ["csv_tool"]
    assert cache.index(DOCS).rank("logs", limit=5) == []
    assert cache.index(docs).rank("json", limit=5) == lexical_rank("json", docs, limit=5)


async def test_a_lexical_ranker_follows_a_changing_library() -> None:
    ranker = LexicalRanker()
    assert await ranker.rank("json", DOCS, limit=5) == lexical_rank("json", DOCS, limit=5)
    grown = [*DOCS, doc("yq", name="yq", description="Filter YAML and JSON documents")]
    assert await ranker.rank("json", grown, limit=5) == lexical_rank("json", grown, limit=5)
    assert [h.id for h in await ranker.rank("yaml", grown, limit=5)] == ["yq"]
    assert await ranker.rank("yaml", DOCS, limit=5) == []
    weighted = LexicalRanker({"description": 0})
    assert [h.id for h in await weighted.rank("json", DOCS, limit=5)] == ["fetch_json"]


# -- typos ------------------------------------------------------------------------------
def test_a_misspelt_query_word_is_corrected_to_a_word_of_the_documents() -> None:
    index = LexicalIndex(DOCS)
    assert index.corrections("fecth the jsno body") == {"fecth": "fetch", "jsno": "json"}
    assert index.rank("fecth jsno")[0].id == "fetch_json"
    assert lexical_rank("fecth jsno", DOCS)[0].id == "fetch_json"


def test_words_the_documents_hold_or_that_are_known_are_never_corrected() -> None:
    index = LexicalIndex(DOCS)
    assert index.corrections("counting words in files") == {}
    assert index.corrections("fount") == {"fount": "count"}
    assert index.corrections("fount", known=frozenset({"fount"})) == {}


def test_short_words_digits_and_source_only_words_are_left_alone() -> None:
    docs = [doc("x", name="x", description="Parse data", source="import pytesseract")]
    index = LexicalIndex(docs)
    assert index.corrections("dta da7a pytesserat") == {}


def test_a_word_with_no_neighbour_in_the_documents_takes_its_only_known_neighbour() -> None:
    index = LexicalIndex(DOCS)
    assert index.corrections("umbrela") == {}
    assert index.corrections("umbrela", known=frozenset({"umbrella"})) == {"umbrela": "umbrella"}
    ambiguous = frozenset({"cart", "card"})
    assert index.corrections("carx", known=ambiguous) == {}


def test_huge_or_numerous_unknown_words_cost_a_bounded_amount_of_work() -> None:
    index = LexicalIndex(DOCS)
    assert index.corrections("q" * 100_000) == {}
    many = " ".join(f"fetc{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}x" for i in range(5_000))
    assert len(index.corrections(many + " fecth")) <= 8
    assert index.corrections("jsno " + many) == {"jsno": "json"}
