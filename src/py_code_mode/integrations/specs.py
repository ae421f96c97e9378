"""Tool specs in OpenAI function-calling form, for frameworks that take JSON schemas.

Every schema is flat and valid in OpenAI's strict mode: each property is a plain
``string``, all properties are required and ``additionalProperties`` is false.
Strict converters such as MBX AI's turn unions (``anyOf``) into ``string``, so a
schema with optional or union-typed fields would reach the model altered; these
reach it as written. Optional server arguments (``timeout``, ``limit``) are
therefore left out: the session's defaults apply.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Final

__all__ = ["DEFAULT_TOOLS", "RUN_CODE_DESCRIPTION", "TOOL_NAMES", "run_code_spec", "tool_specs"]

RUN_CODE_DESCRIPTION: Final = (
    "Run Python in a persistent session: variables, imports and functions stay defined "
    "between calls. Returns the last expression's value (like a REPL), printed output, "
    "and the traceback if the code raised. Top-level `await` works.\n\n"
    "Predefined namespaces:\n"
    "- `tools`: configured tools as functions, e.g. `tools.curl.get(url=...)`; "
    "`tools.list()`, `tools.search('query')`.\n"
    "- `workflows`: saved, reusable recipes: `workflows.search('query')`, "
    "`workflows.<name>(**kwargs)`, `workflows.create(name, source, description)` where "
    "source defines `def run(...)`.\n"
    "- `artifacts`: persistent data: `artifacts.save(name, data, description=...)`, "
    "`artifacts.load(name)`, `artifacts.list()`.\n"
    "- `deps`: Python packages: `deps.list()`, `deps.add('pandas>=2')`.\n\n"
    "Work workflow-first: search for a workflow that does the task and invoke it; "
    "otherwise write the code, and once it works save it with `workflows.create(...)`."
)

_STRING = "string"

# name -> (description, {parameter: description})
_SPECS: Final[dict[str, tuple[str, dict[str, str]]]] = {
    "run_code": (RUN_CODE_DESCRIPTION, {"code": "Python source to run"}),
    "search_workflows": (
        "Find saved workflows for a task, best match first. Do this before writing new "
        "code; invoke a match in run_code as workflows.<name>(...).",
        {"query": "what you want to do, in a few words"},
    ),
    "list_workflows": ("List saved workflows (reusable recipes) with their parameters.", {}),
    "get_workflow": (
        "Show one workflow with its source code.",
        {"name": "workflow name, e.g. 'fetch_json'"},
    ),
    "create_workflow": (
        "Save a reusable workflow. `source` is Python defining `run(...)`; its parameters "
        "and docstring describe it. Replaces a workflow of the same name.",
        {
            "name": "a Python identifier, e.g. 'fetch_json'",
            "source": "Python source defining def run(...)",
            "description": "one sentence on what it does ('' to use the docstring)",
        },
    ),
    "delete_workflow": ("Delete a saved workflow.", {"name": "workflow name"}),
    "search_tools": (
        "Find tools for a task, best match first.",
        {"query": "what you want to do, in a few words"},
    ),
    "list_tools": (
        "List the configured tools and their callables (call them in run_code as "
        "tools.<tool>.<callable>(...)).",
        {},
    ),
    "list_artifacts": ("List stored artifacts (persistent data saved with artifacts.save).", {}),
    "load_artifact": (
        "Read a stored artifact: text as-is, JSON as data, bytes as base64.",
        {"name": "artifact name, e.g. 'report.json'"},
    ),
    "list_deps": ("List the Python packages of the execution environment.", {}),
    "reset_session": (
        "Clear the variables of your run_code session. Workflows, artifacts and "
        "installed packages are kept.",
        {},
    ),
}

TOOL_NAMES: Final = tuple(_SPECS)
"""Every operation :func:`tool_specs` can describe and :func:`call_tool` can run."""

DEFAULT_TOOLS: Final = ("run_code", "search_workflows", "get_workflow", "list_artifacts")
"""A lean set: the model does everything else from Python inside ``run_code``."""


def _spec(name: str, *, strict: bool) -> dict[str, Any]:
    description, params = _SPECS[name]
    function: dict[str, Any] = {
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {p: {"type": _STRING, "description": d} for p, d in params.items()},
            "required": list(params),
            "additionalProperties": False,
        },
    }
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def tool_specs(
    names: Iterable[str] = DEFAULT_TOOLS, *, strict: bool = True
) -> list[dict[str, Any]]:
    """OpenAI-style ``tools`` entries for the named operations.

    Args:
        names: Operations to describe, from :data:`TOOL_NAMES`; the lean
            :data:`DEFAULT_TOOLS` when omitted.
        strict: Mark each function ``"strict": true`` (the schemas are valid either way).

    Raises:
        ValueError: A name is not one of :data:`TOOL_NAMES`.
    """
    specs = []
    for name in names:
        if name not in _SPECS:
            raise ValueError(f"unknown tool {name!r}; choose from {', '.join(TOOL_NAMES)}")
        specs.append(_spec(name, strict=strict))
    return specs


def run_code_spec(*, strict: bool = True) -> dict[str, Any]:
    """The ``run_code`` entry alone: ``{"type": "function", "function": {...}}``."""
    return copy.deepcopy(_spec("run_code", strict=strict))
