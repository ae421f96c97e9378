"""Every operation that crosses the host boundary, in one table.

Agent code (through the worker channel), the :class:`~py_code_mode.Session` facade,
the MCP server and the CLI reach the host only through these entries; each adapter
is a few lines naming its entry. To add an operation, add an entry here and its
implementation beside the others of its namespace.
"""

from __future__ import annotations

from typing import Any

from py_code_mode._private.commands import artifacts, deps, session, tools, workflows
from py_code_mode._private.commands.base import Command, Input

__all__ = ["COMMANDS"]

_TABLE: list[Command[Any]] = [
    # name, input, result shape, description, implementation, flags
    Command("tools.list", Input, "list[{name, description, kind, callables}]",
            "Every tool with its callables.", tools.list_, read_only=True),
    Command("tools.names", Input, "list[str]",
            "Names of all tools.", tools.names, read_only=True),
    Command("tools.search", tools.Search, "list[tool entry + score, why]",
            "Tools ranked for a query, best first.", tools.search, read_only=True),
    Command("tools.call", tools.Call, "the tool's result (text or JSON data)",
            "Call a tool or one of its callables on the host.", tools.call, open_world=True),
    Command("workflows.list", Input, "list[workflow without source]",
            "All workflows without their source.", workflows.list_, read_only=True),
    Command("workflows.search", workflows.Search, "list[workflow + score, why]",
            "Workflows ranked for a query, best first.", workflows.search, read_only=True),
    Command("workflows.get", workflows.Named, "workflow with source",
            "One workflow with its source.", workflows.get, read_only=True),
    Command("workflows.create", workflows.Create, "workflow without source",
            "Validate and store a workflow, replacing one of the same name.",
            workflows.create),
    Command("workflows.delete", workflows.Named, "bool (False: did not exist)",
            "Remove a workflow.", workflows.delete, destructive=True),
    Command("artifacts.save", artifacts.Save, "artifact index entry",
            "Store str, bytes or JSON data under a name.", artifacts.save),
    Command("artifacts.load", artifacts.Named, "the value, of the type it was saved with",
            "Load a stored artifact.", artifacts.load, read_only=True),
    Command("artifacts.list", Input, "list[artifact index entry]",
            "Index entries of all artifacts.", artifacts.list_, read_only=True),
    Command("artifacts.exists", artifacts.Named, "bool",
            "Whether an artifact exists.", artifacts.exists, read_only=True),
    Command("artifacts.info", artifacts.Named, "artifact index entry or None",
            "Index entry of one artifact.", artifacts.info, read_only=True),
    Command("artifacts.delete", artifacts.Named, "bool (False: did not exist)",
            "Remove an artifact.", artifacts.delete, destructive=True),
    Command("deps.list", Input, "list[str]",
            "The persisted requirement specs.", deps.list_, read_only=True),
    Command("deps.add", deps.Spec, "{spec, installed, output}",
            "Install a package and persist its spec.", deps.add,
            needs_executor=True, open_world=True),
    Command("deps.remove", deps.Spec, "bool (False: was not listed)",
            "Uninstall a package and drop its spec.", deps.remove,
            destructive=True, needs_executor=True),
    Command("deps.sync", Input, "{installed, output}",
            "Install every persisted spec.", deps.sync, needs_executor=True),
    Command("session.run", session.Run, "ExecutionResult",
            "Run Python in the session.", session.run,
            needs_executor=True, open_world=True, agent=False),
    Command("session.reset", Input, "None",
            "Clear the session's variables; storage is kept.", session.reset,
            destructive=True, needs_executor=True, agent=False),
]  # fmt: skip

COMMANDS: dict[str, Command[Any]] = {command.name: command for command in _TABLE}
"""Command name -> entry."""
