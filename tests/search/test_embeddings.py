"""The embedding model wrapper: choosing, loading (offline), failing fast, embedding."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from py_code_mode.errors import ConfigError
from py_code_mode.search.embeddings import (
    DEFAULT_MODEL,
    MODEL_ENV_VAR,
    Embedder,
    EmbeddingUnavailableError,
    embedding_status,
    get_embedder,
    resolve_model,
)
from tests._tcp import free_port
from tests.search.eval_set import LOAD_TIMEOUT, needs_model


@pytest.fixture
def closed_port() -> int:
    """A local TCP port that refuses connections: an unreachable model hub."""
    return free_port()


def variant_dir(model_dir: Path, where: Path, config_changes: dict[str, object]) -> Path:
    """The test model's files under another directory with an edited config.json."""
    where.mkdir()
    for item in model_dir.iterdir():
        if item.name != "config.json":
            (where / item.name).symlink_to(item)
    config = json.loads((model_dir / "config.json").read_text())
    config.update(config_changes)
    (where / "config.json").write_text(json.dumps(config))
    return where


# -- choosing the model -----------------------------------------------------------------
def test_the_argument_wins_over_the_environment_which_wins_over_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    assert resolve_model() == (DEFAULT_MODEL, "default")
    monkeypatch.setenv(MODEL_ENV_VAR, " /models/mine ")
    assert resolve_model() == ("/models/mine", "env")
    assert resolve_model("BAAI/bge-base-en-v1.5") == ("BAAI/bge-base-en-v1.5", "argument")
    assert resolve_model(Path("/m")) == ("/m", "argument")


@pytest.mark.parametrize("bad", ["", "   ", 42, b"/models"])
def test_a_model_that_is_not_a_name_or_path_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="embedding model"):
        resolve_model(bad)  # type: ignore[arg-type]


def test_one_shared_embedder_per_model_and_status_does_not_load(tmp_path: Path) -> None:
    spec = str(tmp_path / "never-loaded")
    assert get_embedder(spec) is get_embedder(spec)
    status = embedding_status(spec)
    assert status["state"] == "idle"
    assert status["requested"] == spec


async def test_turning_semantic_search_off_never_loads_a_model(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(MODEL_ENV_VAR, "off")
    embedder = Embedder()
    assert await embedder.wait_ready(timeout=5) is False
    status = embedder.status()
    assert status.state == "disabled"
    assert status.source == "env"
    assert MODEL_ENV_VAR in (status.reason or "")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- loading the offline model ----------------------------------------------------------
@needs_model
def test_a_local_model_directory_loads_and_reports_its_identity(embedder: Embedder) -> None:
    status = embedder.status()
    assert status.state == "ready"
    assert status.dim == 384
    assert status.model_id is not None
    assert status.model_id.startswith("local/all-MiniLM-L6-v2-onnx-int8@")
    assert status.load_seconds is not None
    assert status.reason is None
    assert embedder.model_id == status.model_id


@needs_model
def test_the_loaded_model_exposes_the_words_its_tokenizer_knows_whole(
    embedder: Embedder, tmp_path: Path
) -> None:
    assert {"sounds", "download", "weather"} <= embedder.vocabulary
    assert not {"downlaod", "temprature", "##ing"} & embedder.vocabulary
    assert Embedder(tmp_path / "no-model").vocabulary == frozenset()


@needs_model
async def test_vectors_are_normalised_rows_and_similar_texts_are_closer(
    embedder: Embedder,
) -> None:
    vectors = await embedder.embed(
        ["download a web page", "fetch the html of a url", "bake a chocolate cake"]
    )
    assert vectors.shape == (3, 384)
    assert vectors.dtype.name == "float32"
    norms = (vectors**2).sum(axis=1)
    assert all(abs(n - 1.0) < 1e-4 for n in norms)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert (await embedder.embed([])).shape == (0, 384)


@needs_model
async def test_repeated_queries_are_answered_from_memory(embedder: Embedder) -> None:
    before = embedder.texts_embedded
    first = await embedder.embed_query("a query seen twice")
    second = await embedder.embed_query("a query seen twice")
    assert embedder.texts_embedded == before + 1
    assert (first == second).all()


@needs_model
def test_embedding_a_bare_string_is_refused(embedder: Embedder) -> None:
    with pytest.raises(ConfigError, match="sequence of strings"):
        embedder.embed_sync("not a list")


@needs_model
async def test_loading_happens_in_the_background_without_blocking_the_loop(
    model_dir: Path,
) -> None:
    embedder = Embedder(model_dir)
    embedder.start_loading()
    assert embedder.status().state == "loading"  # start_loading returned before the load
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        assert await embedder.wait_ready(timeout=LOAD_TIMEOUT)
    finally:
        task.cancel()
    assert ticks > 1  # the loop kept running other tasks while the model loaded


@needs_model
def test_the_model_id_changes_with_the_model_content(model_dir: Path, tmp_path: Path) -> None:
    cls_variant = variant_dir(
        model_dir, tmp_path / "all-MiniLM-L6-v2-onnx-int8", {"pooling": "cls"}
    )
    original = Embedder(model_dir).load(timeout=LOAD_TIMEOUT)
    variant = Embedder(cls_variant).load(timeout=LOAD_TIMEOUT)
    assert variant.state == "ready", variant
    assert original.model_id != variant.model_id  # same directory name, other pooling


# -- failing fast, once, with a fix -----------------------------------------------------
async def test_a_missing_directory_fails_with_a_reason_and_a_hint(tmp_path: Path) -> None:
    embedder = Embedder(tmp_path / "no-such-model")
    assert await embedder.wait_ready(timeout=LOAD_TIMEOUT) is False
    status = embedder.status()
    assert status.state == "failed"
    assert "does not exist" in (status.reason or "")
    assert MODEL_ENV_VAR in (status.hint or "")
    with pytest.raises(EmbeddingUnavailableError, match="does not exist"):
        await embedder.embed(["anything"])


@needs_model
@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no tokenizer", "tokenizer.json is missing"),
        ("no size", "no embedding size"),
        ("bad pooling", "unknown pooling"),
        ("not json", "cannot read"),
    ],
)
def test_a_broken_model_directory_fails_and_says_what_is_wrong(
    model_dir: Path, tmp_path: Path, breakage: str, message: str
) -> None:
    broken = variant_dir(model_dir, tmp_path / "broken", {"pooling": "sideways"})
    config = json.loads((model_dir / "config.json").read_text())
    if breakage == "no tokenizer":
        (broken / "tokenizer.json").unlink()
        (broken / "config.json").write_text(json.dumps(config))
    elif breakage == "no size":
        del config["hidden_size"]
        (broken / "config.json").write_text(json.dumps(config))
    elif breakage == "not json":
        (broken / "config.json").write_text("{not json")
    status = Embedder(broken).load(timeout=LOAD_TIMEOUT)
    assert status.state == "failed"
    assert message in (status.reason or "")


async def test_an_unknown_model_name_fails_with_a_hint() -> None:
    embedder = Embedder("nobody/no-such-embedding-model")
    assert await embedder.wait_ready(timeout=LOAD_TIMEOUT) is False
    status = embedder.status()
    assert status.state == "failed"
    assert "neither a fastembed model nor an existing directory" in (status.reason or "")
    assert "list_supported_models" in (status.hint or "")


async def test_an_uncached_model_with_the_hub_unreachable_fails_without_retrying(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, closed_port: int
) -> None:
    # fastembed alone would retry for ~40 s; the bound below is shorter than that.
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    embedder = Embedder(DEFAULT_MODEL, cache_dir=tmp_path / "empty-cache")
    assert await embedder.wait_ready(timeout=30) is False
    status = embedder.status()
    assert status.state == "failed", status
    assert "unreachable" in (status.reason or "")
    assert str(tmp_path / "empty-cache") in (status.reason or "")
    assert MODEL_ENV_VAR in (status.hint or "")


async def test_hf_hub_offline_fails_without_touching_the_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://192.0.2.1")  # TEST-NET: would hang if used
    embedder = Embedder(DEFAULT_MODEL, cache_dir=tmp_path / "empty-cache")
    assert await embedder.wait_ready(timeout=30) is False
    assert "HF_HUB_OFFLINE" in (embedder.status().reason or "")


async def test_a_failure_is_logged_once_per_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = tmp_path / "missing-model-logged-once"
    caplog.set_level(logging.WARNING, logger="py_code_mode.search.embeddings")
    for _ in range(3):
        await Embedder(spec).wait_ready(timeout=LOAD_TIMEOUT)
    warnings = [r for r in caplog.records if "missing-model-logged-once" in r.getMessage()]
    assert len(warnings) == 1
    assert "ranking lexically" in warnings[0].getMessage()
    assert MODEL_ENV_VAR in warnings[0].getMessage()


def test_without_fastembed_the_module_imports_and_search_falls_back_to_lexical() -> None:
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        sys.modules["fastembed"] = None  # what a missing extra looks like to import
        from py_code_mode.search.embeddings import Embedder
        from py_code_mode.search.lexical import SearchDocument
        from py_code_mode.search.semantic import HybridRanker

        async def main():
            embedder = Embedder("BAAI/bge-small-en-v1.5")
            ranker = HybridRanker(embedder=embedder)
            docs = [SearchDocument("fetch_json", {"name": "fetch_json",
                                                  "description": "Fetch a URL"})]
            hits = await ranker.rank("fetch a url", docs, limit=3)
            print(json.dumps({"status": embedder.status().to_dict(),
                              "hits": [[h.id, h.why] for h in hits]}))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"]["state"] == "failed"
    assert "fastembed is not installed" in result["status"]["reason"]
    assert "py-code-mode[search]" in result["status"]["hint"]
    assert result["hits"][0][0] == "fetch_json"
    assert result["hits"][0][1].startswith("lexical only, embedding model unavailable")
    assert done.stderr.count("semantic search unavailable") == 1
