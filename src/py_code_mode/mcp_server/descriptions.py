"""What the model reads in ``tools/list``: one lean description per tool.

Every conversation pays for the tool list before its first call, so the prose is
written once: the namespaces and the workflow-first habit live in ``run_code``;
the other tools say only what they do. Output schemas are kept where a program
reading the structured result gains from them (``run_code``) and dropped
elsewhere, and pydantic's generated ``title`` keys are removed from input schemas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

__all__ = [
    "DESCRIPTIONS",
    "INSTRUCTIONS",
    "KEEP_OUTPUT_SCHEMA",
    "run_code_description",
    "slim_tool_list",
]

INSTRUCTIONS = (
    "A persistent Python environment. Use run_code to execute Python with the namespaces "
    "tools, workflows, artifacts and deps. Search workflows before writing code; save "
    "what works as a workflow."
)

KEEP_OUTPUT_SCHEMA = frozenset({"run_code"})
"""Tools whose output schema is listed; the others answer with text (and data)."""

OUTPUT_SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"
"""The dialect the listed output schemas declare (MCP lets a schema name its own).

The schemas use only keywords that mean the same in draft-07 and 2020-12 (the
default). Clients that validate every result check the schema itself first: the
mcp 1.x client runs ``jsonschema.validate`` per call, whose 2020-12 meta-schema check
costs about ten times what draft-07's does for ``run_code``'s schema (3 ms against 0.3 ms).
"""

DESCRIPTIONS: dict[str, str] = {
    "reset_session": "Clear run_code's variables; workflows, artifacts and packages stay.",
    "list_tools": "List configured tools and their callables (tools.<tool>.<callable>(...)); "
    "`problems` names tool files that failed to load.",
    "search_tools": "Find tools for a task, best match first.",
    "list_workflows": "List saved workflows with their parameters; `problems` names "
    "workflow files that failed to load.",
    "search_workflows": "Find saved workflows for a task, best match first.",
    "get_workflow": "Show one workflow with its source.",
    "create_workflow": "Save (or replace) a workflow: `source` defines `run(...)`, sync or "
    "async; its signature and docstring describe it.",
    "delete_workflow": "Delete a saved workflow.",
    "list_artifacts": "List stored artifacts (also readable as artifact:// resources).",
    "load_artifact": "Read an artifact: text as-is, JSON as data, bytes as base64.",
    "list_deps": "List the execution environment's Python packages.",
    "add_dep": "Install a package from the package index and keep it listed, e.g. 'pandas>=2'.",
    "remove_dep": "Uninstall a package and drop it from the list.",
}


def run_code_description(*, allow_runtime_deps: bool, timeout: float | None) -> str:
    """The ``run_code`` description: the namespaces and the workflow-first habit."""
    deps = (
        "`deps.add('pandas>=2')`, `deps.list()`"
        if allow_runtime_deps
        else "`deps.list()` (installing is disabled)"
    )
    limit = f" Default timeout {timeout:g} s (`timeout=0`: none)." if timeout else ""
    return (
        "Run Python in a persistent session (variables stay until reset_session). Returns "
        f"the last expression's value, stdout, stderr and any traceback; top-level `await` "
        f"works.{limit} Long output is cut and saved whole as an artifact named in the reply; "
        "an image as last value (PNG/JPEG bytes, PIL image, matplotlib figure) or "
        "`artifacts.show(img)` comes back as an image.\n"
        "Namespaces: `tools.<tool>.<callable>(...)`, `tools.search(q)`; "
        "`workflows.search(q)`, `workflows.<name>(...)`, `workflows.create(name, source, "
        "description)`; `artifacts.save(name, data)`, `.load(name)`, `.list()`; "
        f"`deps`: {deps}.\n"
        "Work workflow-first: search workflows and invoke a match; otherwise write the code, "
        "and once it works save it with `workflows.create` so it can be reused."
    )


def _drop_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            k: _drop_titles(v)
            for k, v in schema.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [_drop_titles(v) for v in schema]
    return schema


def _nullable_as_type_list(schema: Any) -> Any:
    """``{"anyOf": [{"type": "string"}, {"type": "null"}]}`` as ``{"type": ["string", "null"]}``.

    The same constraint in one node instead of three. Clients that validate results
    (the mcp 1.x client does, checking the schema itself on every call) pay per node:
    for ``run_code``'s output this and the dropped titles halve that cost.
    """
    if isinstance(schema, list):
        return [_nullable_as_type_list(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    compact = {k: _nullable_as_type_list(v) for k, v in schema.items()}
    branches = compact.get("anyOf")
    if (
        "type" not in compact
        and isinstance(branches, list)
        and all(isinstance(b, dict) and set(b) == {"type"} for b in branches)
        and all(isinstance(b["type"], str) for b in branches)
    ):
        del compact["anyOf"]
        compact["type"] = [b["type"] for b in branches]
    return compact


def slim_tool_list(server: MCPServer[Any]) -> None:
    """Drop generated titles from schemas and unneeded output schemas, in place."""
    manager = server._tool_manager
    for tool in manager.list_tools():
        tool.parameters = _drop_titles(tool.parameters)
        # ``output_schema`` is a cached property: setting it on the instance wins.
        if tool.name not in KEEP_OUTPUT_SCHEMA:
            tool.__dict__["output_schema"] = None
        elif tool.output_schema is not None:
            tool.__dict__["output_schema"] = {
                "$schema": OUTPUT_SCHEMA_DIALECT,
                **_nullable_as_type_list(_drop_titles(tool.output_schema)),
            }
