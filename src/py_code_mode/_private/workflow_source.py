"""Static analysis of workflow source: validation, parameters, description.

Runs on the host, so it only parses (``ast``) and never executes the source.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Mapping
from typing import Any

from py_code_mode._private.names import validate_workflow_name
from py_code_mode.errors import WorkflowError
from py_code_mode.models import WorkflowParameter, WorkflowRecord

__all__ = ["analyze_workflow", "MAX_WORKFLOW_SOURCE"]

MAX_WORKFLOW_SOURCE = 256 * 1024
"""Largest accepted workflow source, in characters."""

_NO_DEFAULT = object()


def analyze_workflow(
    name: str,
    source: str,
    description: str = "",
    *,
    metadata: Mapping[str, Any] | None = None,
    created_at: float | None = None,
    updated_at: float | None = None,
) -> WorkflowRecord:
    """Validate a workflow and build its record.

    Args:
        name: Workflow name (validated).
        source: Python source that must define ``run`` at module level.
        description: Explicit description; when empty the docstring of ``run`` (or
            of the module) is used.
        metadata: JSON data to keep with the workflow.
        created_at: Creation timestamp to keep; now when omitted.
        updated_at: Update timestamp; now when omitted.

    Raises:
        InvalidNameError: The name is unusable.
        WorkflowError: The source is not str, too long, has a syntax error, or does
            not define a ``run`` function.
    """
    validate_workflow_name(name)
    if not isinstance(source, str):
        raise WorkflowError(f"workflow {name!r}: source must be a string of Python code")
    if len(source) > MAX_WORKFLOW_SOURCE:
        raise WorkflowError(f"workflow {name!r}: source is longer than {MAX_WORKFLOW_SOURCE} chars")
    if not isinstance(description, str):
        raise WorkflowError(f"workflow {name!r}: description must be a string")
    try:
        tree = ast.parse(source, filename=f"<workflow {name}>")
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        raise WorkflowError(
            f"workflow {name!r} has a syntax error at {where}: {exc.msg}"
        ) from None
    run = _find_run(tree)
    if run is None:
        raise WorkflowError(
            f"workflow {name!r} must define a function 'run(...)' at module level "
            "(sync or async), e.g.\n\ndef run(url: str) -> dict:\n    ..."
        )
    doc = ast.get_docstring(run) or ast.get_docstring(tree) or ""
    now = time.time()
    return WorkflowRecord(
        name=name,
        source=source,
        description=description.strip() or _first_paragraph(doc),
        parameters=_parameters(run),
        is_async=isinstance(run, ast.AsyncFunctionDef),
        metadata=dict(metadata or {}),
        created_at=created_at if created_at is not None else now,
        updated_at=updated_at if updated_at is not None else now,
    )


def _find_run(tree: ast.Module) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    found = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "run":
            found = node
    return found


def _first_paragraph(doc: str) -> str:
    return doc.strip().split("\n\n", 1)[0].replace("\n", " ").strip()


def _parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[WorkflowParameter, ...]:
    args = fn.args
    params: list[WorkflowParameter] = []
    positional = [*args.posonlyargs, *args.args]
    defaults: list[Any] = [_NO_DEFAULT] * (len(positional) - len(args.defaults)) + [
        _literal(d) for d in args.defaults
    ]
    for arg, default in zip(positional, defaults, strict=True):
        params.append(_param(arg, default, "positional_or_keyword"))
    if args.vararg is not None:
        params.append(_param(args.vararg, None, "var_positional", required=False))
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        default = _NO_DEFAULT if kw_default is None else _literal(kw_default)
        params.append(_param(arg, default, "keyword_only"))
    if args.kwarg is not None:
        params.append(_param(args.kwarg, None, "var_keyword", required=False))
    return tuple(params)


def _param(
    arg: ast.arg, default: Any, kind: Any, *, required: bool | None = None
) -> WorkflowParameter:
    has_default = default is not _NO_DEFAULT
    return WorkflowParameter(
        name=arg.arg,
        type=ast.unparse(arg.annotation) if arg.annotation is not None else "Any",
        required=(not has_default) if required is None else required,
        default=default if has_default else None,
        kind=kind,
    )


def _literal(node: ast.expr) -> Any:
    """Default value if it is a literal, else its source text (never evaluated)."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return ast.unparse(node)
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    if isinstance(value, list | dict):
        return value
    return ast.unparse(node)
