"""Glue for agent frameworks that call py-code-mode directly (no MCP in between).

Dependency-free: nothing here imports a framework or the MCP SDK.

- :func:`tool_specs` / :func:`run_code_spec`: tool definitions in OpenAI
  function-calling form, flat and valid in strict mode.
- :func:`call_tool`: run a model's tool call against a :class:`~py_code_mode.Session`
  and get the text the MCP server would answer.
- :class:`SyncSession`: blocking methods for frameworks whose tools are synchronous.

Framework-specific helpers live in submodules that import their framework only when
imported themselves (:mod:`py_code_mode.integrations.pygents`).
"""

from __future__ import annotations

from py_code_mode.integrations.dispatch import call_tool, parse_arguments
from py_code_mode.integrations.specs import (
    DEFAULT_TOOLS,
    RUN_CODE_DESCRIPTION,
    TOOL_NAMES,
    run_code_spec,
    tool_specs,
)
from py_code_mode.integrations.sync import SyncSession

__all__ = [
    "DEFAULT_TOOLS",
    "RUN_CODE_DESCRIPTION",
    "TOOL_NAMES",
    "SyncSession",
    "call_tool",
    "parse_arguments",
    "run_code_spec",
    "tool_specs",
]
