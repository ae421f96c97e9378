"""Run one tool call of a model against a :class:`~py_code_mode.Session`.

The answer is the text the MCP server gives for the same call (the server's own
formatting functions make it), so a model sees the same results whether it reaches
py-code-mode over MCP or through a framework's function calling.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from py_code_mode.errors import PyCodeModeError
from py_code_mode.integrations.specs import TOOL_NAMES
from py_code_mode.mcp_server.formatting import (
    DEFAULT_MAX_CHARS,
    artifact_payload,
    format_artifacts,
    format_deps,
    format_run_result,
    format_tools,
    format_workflow,
    format_workflows,
    workflow_line,
)

if TYPE_CHECKING:
    from py_code_mode.session import Session

__all__ = ["call_tool", "parse_arguments"]

_Handler = Callable[["Session", dict[str, Any], "_Options"], Awaitable[str]]


@dataclass(frozen=True)
class _Options:
    timeout: float | None
    max_chars: int


class _BadCallError(Exception):
    """The model's call itself is wrong; its message is the answer."""


def parse_arguments(arguments: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """A call's arguments as a dict, from a mapping or the JSON text models send.

    Raises:
        ValueError: The text is not a JSON object.
    """
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments are not valid JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ValueError("arguments must be a JSON object")  # noqa: TRY004
        return parsed
    return dict(arguments)


def _text(args: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = args.get(name)
    if value is None or value == "":
        if required:
            raise _BadCallError(f"missing required argument {name!r}")
        return ""
    if not isinstance(value, str):
        raise _BadCallError(f"argument {name!r} must be a string, got {type(value).__name__}")
    return value


def _limit(args: dict[str, Any], default: int) -> int:
    value = args.get("limit", default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 50:
        raise _BadCallError("argument 'limit' must be an integer from 1 to 50")
    return value


async def _run_code(session: Session, args: dict[str, Any], opts: _Options) -> str:
    code = _text(args, "code")
    timeout = args.get("timeout") or opts.timeout
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        raise _BadCallError("argument 'timeout' must be a number of seconds")
    result = await session.run(code, timeout=timeout)
    return format_run_result(result, opts.max_chars)[0]


async def _reset_session(session: Session, args: dict[str, Any], opts: _Options) -> str:
    await session.reset()
    return "Session reset: all variables are cleared."


async def _list_tools(session: Session, args: dict[str, Any], opts: _Options) -> str:
    return format_tools(await session.list_tools())


async def _search_tools(session: Session, args: dict[str, Any], opts: _Options) -> str:
    query = _text(args, "query")
    return format_tools(await session.search_tools(query, _limit(args, 10)), query=query)


async def _list_workflows(session: Session, args: dict[str, Any], opts: _Options) -> str:
    return format_workflows(await session.list_workflows())


async def _search_workflows(session: Session, args: dict[str, Any], opts: _Options) -> str:
    query = _text(args, "query")
    return format_workflows(await session.search_workflows(query, _limit(args, 5)), query=query)


async def _get_workflow(session: Session, args: dict[str, Any], opts: _Options) -> str:
    name = _text(args, "name")
    record = await session.get_workflow(name)
    if record is None:
        raise _BadCallError(f"no workflow named {name!r}; list_workflows shows what exists")
    return format_workflow(record, opts.max_chars)


async def _create_workflow(session: Session, args: dict[str, Any], opts: _Options) -> str:
    record = await session.add_workflow(
        _text(args, "name"), _text(args, "source"), _text(args, "description", required=False)
    )
    return (
        f"Saved workflow {workflow_line(record)}\n"
        f"Invoke it in run_code: workflows.{record['name']}(...)"
    )


async def _delete_workflow(session: Session, args: dict[str, Any], opts: _Options) -> str:
    name = _text(args, "name")
    if not await session.remove_workflow(name):
        raise _BadCallError(f"no workflow named {name!r}; list_workflows shows what exists")
    return f"Deleted workflow {name}."


async def _list_artifacts(session: Session, args: dict[str, Any], opts: _Options) -> str:
    return format_artifacts(await session.list_artifacts())


async def _load_artifact(session: Session, args: dict[str, Any], opts: _Options) -> str:
    name = _text(args, "name")
    return artifact_payload(name, await session.load_artifact(name), opts.max_chars)[0]


async def _list_deps(session: Session, args: dict[str, Any], opts: _Options) -> str:
    config = getattr(session.executor, "config", None)
    allowed = bool(getattr(config, "allow_runtime_deps", True))
    return format_deps(await session.list_deps(), allow_runtime_deps=allowed)


_HANDLERS: dict[str, _Handler] = {
    "run_code": _run_code,
    "reset_session": _reset_session,
    "list_tools": _list_tools,
    "search_tools": _search_tools,
    "list_workflows": _list_workflows,
    "search_workflows": _search_workflows,
    "get_workflow": _get_workflow,
    "create_workflow": _create_workflow,
    "delete_workflow": _delete_workflow,
    "list_artifacts": _list_artifacts,
    "load_artifact": _load_artifact,
    "list_deps": _list_deps,
}
assert set(_HANDLERS) == set(TOOL_NAMES)


async def call_tool(
    session: Session,
    name: str,
    arguments: Mapping[str, Any] | str | None = None,
    *,
    timeout: float | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> str:
    """Run a model's tool call and return the text to hand back to the model.

    Mistakes in the call (unknown tool, missing argument, unknown workflow) and
    library refusals come back as text too, saying what to do instead, as the MCP
    server's tool errors do: the model reads them and tries again. An exception in
    the model's Python is part of an ordinary ``run_code`` result.

    Args:
        session: The session to run against (started on first use).
        name: One of :data:`~py_code_mode.integrations.TOOL_NAMES`.
        arguments: The call's arguments, as a mapping or the JSON text models send.
        timeout: Default limit of one ``run_code`` in seconds (the session's when None).
        max_chars: Characters kept per result field before truncation.
    """
    handler = _HANDLERS.get(name)
    if handler is None:
        return f"unknown tool {name!r}; the tools are {', '.join(TOOL_NAMES)}"
    try:
        args = parse_arguments(arguments)
        return await handler(session, args, _Options(timeout, max_chars))
    except (PyCodeModeError, _BadCallError, ValueError) as exc:
        return str(exc)
