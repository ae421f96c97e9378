"""Fixtures of the MCP server tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A library directory that does not exist yet (the server creates it)."""
    return tmp_path / "library"
