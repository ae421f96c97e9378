"""Static analysis of workflow source: validation, parameters, description.

Runs on the host, so it only parses (``ast``) and never executes the source.
"""

from __future__ import annotations

import ast
import math
import time
from collections.abc import Mapping
from typing import Any

from py_code_mode.errors import WorkflowError
from py_code_mode.models import WorkflowParameter, WorkflowRecord

__all__ = ["MAX_WORKFLOW_SOURCE", "analyze_workflow"]

MAX_WORKFLOW_SOURCE = 256 * 1024
"""Largest accepted workflow source, in characters."""

_NO_DEFAULT = object()
_MAX_INT_BITS = 4096  # ~1,233 decimal digits, well under int-to-str limit of 4,300


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
        name: Workflow name, already checked by the caller (the command table).
        source: Python source that must define ``run`` at module level.
        description: Explicit description; when empty the docstring of ``run`` (or
            of the module) is used.
        metadata: JSON data to keep with the workflow.
        created_at: Creation timestamp to keep; now when omitted.
        updated_at: Update timestamp; now when omitted.

    Raises:
        WorkflowError: The source is too long, has a syntax error, or does
            not define a ``run`` function.
    """
    if len(source) > MAX_WORKFLOW_SOURCE:
        raise WorkflowError(f"workflow {name!r}: source is longer than {MAX_WORKFLOW_SOURCE} chars")
    try:
        tree = ast.parse(source, filename=f"<workflow {name}>")
    except SyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno else ""
        where += f", column {exc.offset}" if exc.lineno and exc.offset else ""
        raise WorkflowError(f"workflow {name!r} has a syntax error{where}: {exc.msg}") from None
    except ValueError as exc:  # NUL bytes on Python 3.11 (3.12+ raises SyntaxError)
        raise WorkflowError(f"workflow {name!r} cannot be parsed: {exc}") from None
    except (RecursionError, MemoryError):
        raise WorkflowError(
            f"workflow {name!r} is too deeply nested for the Python parser; simplify the code"
        ) from None
    run = _find_run(tree)
    if run is None:
        raise WorkflowError(
            f"workflow {name!r} must define a function 'run(...)' at module level "
            "(sync or async), e.g.\n\ndef run(url: str) -> dict:\n    ..."
        )
    doc = ast.get_docstring(run) or ast.get_docstring(tree) or ""
    try:
        parameters = _parameters(run)
    except RecursionError:
        # ast.unparse recurses per node: a parseable but absurdly deep default or
        # annotation (a.b.c... many times) would otherwise escape as RecursionError.
        raise WorkflowError(
            f"workflow {name!r}: the signature of run() is too deeply nested to describe"
        ) from None
    now = time.time()
    return WorkflowRecord(
        name=name,
        source=source,
        description=description.strip() or _first_paragraph(doc),
        parameters=parameters,
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
        type=_text(arg.annotation) if arg.annotation is not None else "Any",
        required=(not has_default) if required is None else required,
        default=default if has_default else None,
        kind=kind,
    )


def _literal(node: ast.expr) -> Any:
    """Default value if it is a literal, else its source text (never evaluated)."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _text(node)
    if _is_json(value):
        return value
    return _text(node)


def _text(node: ast.expr) -> str:
    """Source text of an expression, for display only."""
    try:
        return ast.unparse(node)
    except ValueError:  # an int literal beyond the int-to-str digit limit
        return "..."


def _is_json(value: Any) -> bool:
    """True when ``value`` survives JSON unchanged (defaults travel as JSON to clients).

    ``literal_eval`` also yields bytes, tuples, sets, complex numbers, non-str dict keys
    and infinities, which JSON either rejects or silently changes, and ints too long
    for ``json.dumps`` (Python's int-to-str digit limit, reachable with hex literals).
    """
    if value is None or isinstance(value, str | bool):
        return True
    if isinstance(value, int):
        return value.bit_length() <= _MAX_INT_BITS
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False
