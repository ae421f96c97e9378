"""Fixtures shared by the whole suite."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

GREET_TOOL = """
name: greet
description: Print words with echo; a stand-in for any CLI tool
command: echo
separator: null  # echo would print "--"
timeout: 10
schema:
  options:
    no_newline: {type: boolean, short: n, description: Do not print the trailing newline}
  positional:
    - {name: text, type: string, required: true, description: Words to print}
recipes:
  hello:
    description: Say hello to someone
    preset: {no_newline: true}
    params:
      text: {type: string, default: world, description: Who to greet}
"""

FAIL_TOOL = """
name: fail
description: Always fails with a message on stderr
command: sh
separator: null
args: ["-c", "echo 'something broke' >&2; exit 3"]
timeout: 10
"""


@pytest.fixture
def tools_dir(tmp_path: Path) -> Path:
    """A tools directory with a working CLI tool and a failing one."""
    path = tmp_path / "tools"
    path.mkdir()
    (path / "greet.yaml").write_text(textwrap.dedent(GREET_TOOL))
    (path / "fail.yaml").write_text(textwrap.dedent(FAIL_TOOL))
    return path


@pytest.fixture
def tool_jail_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run CLI tools unjailed: for tests of host-side process handling and host files."""
    monkeypatch.setenv("PY_CODE_MODE_TOOL_JAIL", "off")
