"""Search quality on the labelled set: semantic, lexical and combined recall.

Run with ``-s`` to see the recall table (bench/bench_search.py prints it too).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from py_code_mode.search.embeddings import Embedder
from py_code_mode.search.lexical import lexical_rank
from py_code_mode.search.ranker import LexicalRanker
from py_code_mode.search.semantic import HybridRanker
from tests.search.eval_set import (
    all_labelled,
    evaluate,
    library_documents,
    local_model_dir,
    recall_table,
)

Results = dict[str, dict[str, tuple[float, float]]]

MODEL_DIR = local_model_dir()


@pytest.fixture(scope="module")
def results() -> Results:
    if MODEL_DIR is None:
        pytest.skip(
            "offline test model not found at <repo>/../shared/models/all-MiniLM-L6-v2-onnx-int8 "
            "(set PY_CODE_MODE_TEST_MODEL_DIR to its directory)"
        )
    embedder = Embedder(MODEL_DIR)
    assert embedder.load(timeout=120).state == "ready"
    docs = library_documents()
    queries = all_labelled()

    async def measure() -> Results:
        return {
            "lexical": await evaluate(LexicalRanker(), docs, queries),
            "semantic": await evaluate(
                HybridRanker(embedder=embedder, lexical_weight=0.0), docs, queries
            ),
            "combined": await evaluate(HybridRanker(embedder=embedder), docs, queries),
        }

    measured = asyncio.run(measure())
    print("\n" + recall_table(measured))
    return measured


def test_combined_beats_lexical_by_a_wide_margin_on_paraphrased_queries(
    results: Results,
) -> None:
    lexical = results["lexical"]["paraphrased"]
    combined = results["combined"]["paraphrased"]
    assert combined[0] >= lexical[0] + 0.4
    assert combined[1] >= lexical[1] + 0.4
    assert combined[1] >= 0.85


def test_combined_is_never_below_semantic_alone(results: Results) -> None:
    for kind, (semantic_at_1, semantic_at_3) in results["semantic"].items():
        combined_at_1, combined_at_3 = results["combined"][kind]
        assert combined_at_1 >= semantic_at_1, kind
        assert combined_at_3 >= semantic_at_3, kind


def test_exact_names_rank_first(results: Results) -> None:
    assert results["combined"]["exact name"][0] == 1.0


def test_identifiers_only_the_source_knows_are_found_through_the_word_signal(
    results: Results,
) -> None:
    combined = results["combined"]["identifier"]
    assert combined[0] >= results["lexical"]["identifier"][0]
    assert combined[0] > results["semantic"]["identifier"][0]


async def test_the_fallback_ranks_exactly_like_lexical_search(tmp_path: Path) -> None:
    ranker = HybridRanker(embedder=Embedder(tmp_path / "no-model"))
    docs = library_documents()
    for query in all_labelled():
        fallback = await ranker.rank(query.query, docs, limit=10)
        lexical = lexical_rank(query.query, docs, limit=10)
        assert [(h.id, h.score) for h in fallback] == [(h.id, h.score) for h in lexical], query
