"""The hybrid ranker: meaning plus words, the embedding cache, and the lexical fallback."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from py_code_mode import Session
from py_code_mode.errors import ConfigError
from py_code_mode.search.embeddings import MODEL_ENV_VAR, Embedder, get_embedder
from py_code_mode.search.lexical import SearchDocument, lexical_rank
from py_code_mode.search.semantic import HybridRanker, embed_text, embedding_key, query_text
from py_code_mode.storage.file import FileStorage
from tests.search.eval_set import (
    LIBRARY,
    LOAD_TIMEOUT,
    document,
    library_documents,
    needs_model,
)


@pytest.fixture(scope="module")
def other_embedder(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    """The same weights with CLS pooling: a different model id."""
    where = tmp_path_factory.mktemp("variant") / "minilm-cls"
    where.mkdir()
    for item in model_dir.iterdir():
        if item.name != "config.json":
            (where / item.name).symlink_to(item)
    (where / "config.json").write_text(
        (model_dir / "config.json").read_text().replace("{", '{"pooling": "cls",', 1)
    )
    loaded = Embedder(where)
    assert loaded.load(timeout=LOAD_TIMEOUT).state == "ready"
    return loaded


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[FileStorage]:
    backend = FileStorage(tmp_path / "store")
    await backend.open()
    yield backend
    await backend.close()


@pytest.fixture
def docs() -> list[SearchDocument]:
    return library_documents()


def unavailable_embedder(tmp_path: Path) -> Embedder:
    return Embedder(tmp_path / "no-model-here")


# -- ranking ----------------------------------------------------------------------------
@needs_model
async def test_a_paraphrased_query_finds_the_workflow_by_meaning(
    embedder: Embedder, docs: list[SearchDocument]
) -> None:
    ranker = HybridRanker(embedder=embedder)
    hits = await ranker.rank("grab the payload from an API endpoint and decode it", docs, limit=3)
    assert hits[0].id == "fetch_json"
    assert hits[0].why.startswith("semantic ")
    assert lexical_rank("grab the payload from an API endpoint and decode it", docs)[0].id != (
        "fetch_json"
    )


@needs_model
async def test_a_misspelt_query_is_corrected_before_it_is_embedded(
    embedder: Embedder, docs: list[SearchDocument]
) -> None:
    ranker = HybridRanker(embedder=embedder)
    for query, expected in (
        ("upcomiing appointments from my ics link", "calendar_events"),
        ("say this in jaapnese", "translate_text"),
        ("how many working days are left this montth", "business_days_between"),
    ):
        hits = await ranker.rank(query, docs, limit=3)
        assert hits[0].id == expected, (query, hits)
    hits = await ranker.rank("make a copy of the sqliite file with its date", docs, limit=1)
    assert hits[0].id == "backup_sqlite"
    assert "sqlite (" in hits[0].why


def test_the_embedded_query_drops_conversational_openers_and_keeps_the_rest() -> None:
    assert query_text("Please, can you resize an image", {}) == "resize an image"
    assert query_text("how do I downlaod it", {"downlaod": "download"}) == "download it"
    assert query_text("I need to send an email", {}) == "send an email"
    assert query_text("so what is eating my disk", {}) == "what is eating my disk"
    assert query_text("please", {}) == "please"
    assert query_text("please " * 10_000, {}) == "please " * 10_000


@needs_model
async def test_an_opener_does_not_change_what_the_model_compares(
    embedder: Embedder, docs: list[SearchDocument]
) -> None:
    ranker = HybridRanker(embedder=embedder, lexical_weight=0.0)
    bare = await ranker.rank("keep a dated copy of the embedded db", docs, limit=3)
    asked = await ranker.rank("I need to keep a dated copy of the embedded db", docs, limit=3)
    assert [(h.id, h.score) for h in asked] == [(h.id, h.score) for h in bare]


@needs_model
async def test_an_exact_name_ranks_first_and_says_so(
    embedder: Embedder, docs: list[SearchDocument]
) -> None:
    ranker = HybridRanker(embedder=embedder)
    for name in ("html_to_text", "markdown_to_html", "csv_to_json", "json_to_yaml"):
        hits = await ranker.rank(name, docs, limit=5)
        assert hits[0].id == name
        assert hits[0].score == 1.0
        assert hits[0].why.startswith("exact name match; semantic ")


@needs_model
async def test_results_carry_a_score_and_the_semantic_and_word_parts_of_it(
    embedder: Embedder, docs: list[SearchDocument]
) -> None:
    ranker = HybridRanker(embedder=embedder)
    hits = await ranker.rank("pytesseract", docs, limit=5)
    assert hits[0].id == "ocr_image"
    assert "+ words 1.00: pytesseract (source)" in hits[0].why
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert len({h.id for h in hits}) == len(hits) == 5


@needs_model
async def test_tool_documents_rank_by_meaning_too(embedder: Embedder) -> None:
    tools = [
        SearchDocument(
            "curl",
            {
                "name": "curl",
                "callables": "get post head",
                "description": "Transfer data from or to a server over HTTP",
                "parameters": "url silent",
            },
        ),
        SearchDocument(
            "jq",
            {"name": "jq", "callables": "filter", "description": "Command-line JSON processor"},
        ),
        SearchDocument(
            "git",
            {"name": "git", "callables": "log diff", "description": "Version control system"},
        ),
    ]
    ranker = HybridRanker(embedder=embedder)
    assert (await ranker.rank("download a web page", tools, limit=3))[0].id == "curl"
    assert (await ranker.rank("history of commits in my repo", tools, limit=3))[0].id == "git"


@needs_model
async def test_meaning_alone_ignores_the_words(
    embedder: Embedder, docs: list[SearchDocument]
) -> None:
    ranker = HybridRanker(embedder=embedder, lexical_weight=0.0)
    hits = await ranker.rank("fetch_json", docs, limit=3)
    assert all(" + words" not in h.why and "exact" not in h.why for h in hits)


@needs_model
async def test_no_query_words_or_no_documents_give_no_hits(
    embedder: Embedder, docs: list[SearchDocument]
) -> None:
    ranker = HybridRanker(embedder=embedder)
    assert await ranker.rank("   ", docs, limit=5) == []
    assert await ranker.rank("?!", docs, limit=5) == []
    assert await ranker.rank("fetch json", [], limit=5) == []


@pytest.mark.parametrize("limit", [0, -1, 2.5, True, None])
async def test_a_bad_limit_is_a_config_error(limit: object, tmp_path: Path) -> None:
    ranker = HybridRanker(embedder=unavailable_embedder(tmp_path))
    with pytest.raises(ConfigError, match="limit"):
        await ranker.rank("x", library_documents(), limit=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lexical_weight": -0.1},
        {"lexical_weight": "high"},
        {"load_wait": -1},
        {"field_weights": {"name": -1.0}},
        {"embed_fields": "name"},
        {"embed_fields": ()},
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, object], tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        HybridRanker(embedder=unavailable_embedder(tmp_path), **kwargs)  # type: ignore[arg-type]


async def test_a_query_that_is_not_a_string_is_a_config_error(tmp_path: Path) -> None:
    ranker = HybridRanker(embedder=unavailable_embedder(tmp_path))
    with pytest.raises(ConfigError, match="query must be a string"):
        await ranker.rank(None, library_documents(), limit=3)  # type: ignore[arg-type]


def test_the_embedded_text_is_name_words_and_description_or_else_source() -> None:
    described = document(LIBRARY[0])
    assert embed_text(described) == "fetch json: Fetch a URL and parse the JSON body"
    bare = SearchDocument("tidy", {"name": "tidy", "description": "", "source": "def run(): 1"})
    assert embed_text(bare) == "tidy: def run(): 1"
    assert embedding_key("a") == embedding_key("a") != embedding_key("b")


# -- the embedding cache ----------------------------------------------------------------
@needs_model
async def test_unchanged_documents_are_never_embedded_again(
    embedder: Embedder, storage: FileStorage, docs: list[SearchDocument]
) -> None:
    ranker = HybridRanker(storage, embedder=embedder)
    start = embedder.texts_embedded
    await ranker.rank("first question", docs, limit=3)
    assert embedder.texts_embedded - start == len(docs) + 1  # every doc, then the query
    start = embedder.texts_embedded
    await ranker.rank("second question", docs, limit=3)
    assert embedder.texts_embedded - start == 1  # the new query only
    start = embedder.texts_embedded
    assert await ranker.index(docs) == 0
    assert embedder.texts_embedded == start


@needs_model
async def test_a_new_ranker_reads_vectors_from_the_storage_cache(
    embedder: Embedder, storage: FileStorage, docs: list[SearchDocument], tmp_path: Path
) -> None:
    assert await HybridRanker(storage, embedder=embedder).index(docs) == len(docs)
    keys = [embedding_key(embed_text(d)) for d in docs]
    cached = await storage.get_vectors(embedder.model_id, keys)
    assert set(cached) == set(keys)
    reopened = FileStorage(tmp_path / "store")  # another process would see the same files
    await reopened.open()
    try:
        start = embedder.texts_embedded
        assert await HybridRanker(reopened, embedder=embedder).index(docs) == 0
        hits = await HybridRanker(reopened, embedder=embedder).rank(
            "make a picture smaller", docs, limit=1
        )
        assert hits[0].id == "resize_image"
        assert embedder.texts_embedded - start == 1  # the query
    finally:
        await reopened.close()


@needs_model
async def test_a_changed_description_is_embedded_again_and_only_it(
    embedder: Embedder, storage: FileStorage, docs: list[SearchDocument]
) -> None:
    ranker = HybridRanker(storage, embedder=embedder)
    await ranker.index(docs)
    changed = list(docs)
    changed[0] = SearchDocument(
        docs[0].id, {**docs[0].fields, "description": "Bake bread from flour, water and yeast"}
    )
    assert await ranker.index(changed) == 1
    hits = await ranker.rank("a recipe for a loaf", changed, limit=1)
    assert hits[0].id == docs[0].id  # the new meaning is what gets found
    source_only = list(changed)
    source_only[1] = SearchDocument(
        docs[1].id, {**docs[1].fields, "source": "def run(url, dest):\n    return dest\n"}
    )
    assert await ranker.index(source_only) == 0  # the embedded text did not change


@needs_model
async def test_a_different_model_does_not_see_the_other_models_vectors(
    embedder: Embedder,
    other_embedder: Embedder,
    storage: FileStorage,
    docs: list[SearchDocument],
) -> None:
    assert embedder.model_id != other_embedder.model_id
    assert await HybridRanker(storage, embedder=embedder).index(docs) == len(docs)
    assert await HybridRanker(storage, embedder=other_embedder).index(docs) == len(docs)
    keys = [embedding_key(embed_text(docs[0]))]
    first = await storage.get_vectors(embedder.model_id, keys)
    second = await storage.get_vectors(other_embedder.model_id, keys)
    assert first[keys[0]] != second[keys[0]]
    assert await HybridRanker(storage, embedder=embedder).index(docs) == 0


@needs_model
async def test_a_broken_embedding_cache_is_logged_once_and_search_still_works(
    embedder: Embedder,
    storage: FileStorage,
    docs: list[SearchDocument],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "store" / ".cache" / "embeddings"
    shutil.rmtree(cache)
    cache.write_text("a file where the cache folder should be")
    ranker = HybridRanker(storage, embedder=embedder)
    caplog.set_level(logging.WARNING, logger="py_code_mode.search.semantic")
    first = await ranker.rank("make a picture smaller", docs, limit=1)
    more = [*docs, document(LIBRARY[0], suffix="_copy")]
    second = await ranker.rank("make a picture smaller", more, limit=1)
    assert first[0].id == second[0].id == "resize_image"
    assert first[0].why.startswith("semantic ")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot read the embedding cache" in m for m in messages) == 1
    assert sum("cannot write the embedding cache" in m for m in messages) == 1


# -- fallback ---------------------------------------------------------------------------
async def test_without_a_model_ranking_is_lexical_and_says_so(
    tmp_path: Path, docs: list[SearchDocument]
) -> None:
    ranker = HybridRanker(embedder=unavailable_embedder(tmp_path))
    for query in ("fetch json from a url", "count words", "fetch_json"):
        hits = await ranker.rank(query, docs, limit=5)
        expected = lexical_rank(query, docs, limit=5)
        assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in expected]
        assert all(h.why.startswith("lexical only, embedding model unavailable") for h in hits)
    assert await ranker.rank("kubernetes", docs, limit=5) == []
    status = ranker.status()
    assert status["ranking"] == "lexical"
    assert status["state"] == "failed"
    assert await ranker.index(docs) == 0


@needs_model
async def test_searches_are_lexical_while_the_model_loads_then_hybrid(
    model_dir: Path, docs: list[SearchDocument]
) -> None:
    fresh = Embedder(model_dir)
    ranker = HybridRanker(embedder=fresh, load_wait=0.0)
    hits = await ranker.rank("fetch json", docs, limit=3)
    assert hits[0].id == "fetch_json"
    assert hits[0].why.startswith("lexical only, embedding model still loading")
    assert ranker.status()["ranking"] == "lexical"
    assert await fresh.wait_ready(timeout=LOAD_TIMEOUT)
    hits = await ranker.rank("fetch json", docs, limit=3)
    assert hits[0].why.startswith("exact name match; semantic ")
    assert ranker.status()["ranking"] == "hybrid"


@needs_model
async def test_the_first_search_may_wait_briefly_for_the_model(
    model_dir: Path, docs: list[SearchDocument]
) -> None:
    ranker = HybridRanker(embedder=Embedder(model_dir), load_wait=LOAD_TIMEOUT)
    hits = await ranker.rank("make a picture smaller", docs, limit=1)
    assert hits[0].id == "resize_image"
    assert hits[0].why.startswith("semantic ")


# -- sessions use it by default ---------------------------------------------------------
@needs_model
async def test_a_session_searches_by_meaning_with_the_configured_model(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tools_dir: Path
) -> None:
    monkeypatch.setenv(MODEL_ENV_VAR, str(model_dir))
    assert await get_embedder().wait_ready(timeout=LOAD_TIMEOUT)
    base = tmp_path / "base"
    shutil.copytree(tools_dir, base / "tools")
    async with Session.inprocess(base) as session:
        for workflow in LIBRARY[:20]:
            await session.add_workflow(workflow.name, workflow.source, workflow.description)
        hits = await session.search_workflows("is this website up or down", limit=3)
        assert hits[0]["name"] == "check_url_status"
        assert hits[0]["why"].startswith("semantic ")
        assert {"score", "why", "description", "parameters"} <= set(hits[0])
        tools = await session.search_tools("say hi to somebody", limit=2)
        assert tools[0]["name"] == "greet"
        result = await session.run("workflows.search('get rid of repeated records', limit=1)")
        assert result.is_ok, result.error
        assert result.value[0]["name"] == "dedupe_rows"
    assert any((base / ".cache" / "embeddings").iterdir())  # vectors persisted


async def test_a_session_without_a_usable_model_searches_lexically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODEL_ENV_VAR, str(tmp_path / "no-model"))
    async with Session.inprocess(tmp_path / "base") as session:
        await session.add_workflow("fetch_json", LIBRARY[0].source, LIBRARY[0].description)
        hits = await session.search_workflows("fetch json")
        assert hits[0]["name"] == "fetch_json"
        assert hits[0]["why"].startswith("lexical only")
