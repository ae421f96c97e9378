"""Fixtures for the search tests: the offline embedding model, loaded once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from py_code_mode.search.embeddings import Embedder
from tests.search.eval_set import LOAD_TIMEOUT, MODEL_DIR


@pytest.fixture(scope="module")
def model_dir() -> Path:
    if MODEL_DIR is None:
        pytest.skip("offline test model not available")
    return MODEL_DIR


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> Embedder:
    """The offline model, loaded once for the module."""
    loaded = Embedder(model_dir)
    status = loaded.load(timeout=LOAD_TIMEOUT)
    assert status.state == "ready", status
    return loaded
