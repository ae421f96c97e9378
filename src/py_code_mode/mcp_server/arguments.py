"""Tool arguments checked before a call, with errors a model can act on.

The SDK ignores arguments a tool does not declare and reports bad ones as raw
pydantic text (with documentation URLs). A middleware checks ``tools/call``
first: an unknown argument is refused by name with the accepted ones listed, and
each invalid argument becomes one line saying what was wrong and what to send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

__all__ = ["argument_checker", "describe_validation_error"]

_TYPE_WORDS = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
}


def _expected(schema: Mapping[str, Any]) -> str:
    """What a parameter's JSON schema asks for, in a few words."""
    options = schema.get("anyOf")
    types = [s.get("type") for s in options] if isinstance(options, list) else [schema.get("type")]
    words = [_TYPE_WORDS.get(str(t), str(t)) for t in types if t and t != "null"]
    text = " or ".join(words) or "a value"
    bounds = []
    for key, word in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        found = [s.get(key) for s in options if key in s] if isinstance(options, list) else []
        value = schema.get(key, found[0] if found else None)
        if value is not None:
            bounds.append(f"{word} {value:g}" if isinstance(value, float) else f"{word} {value}")
    if "minLength" in schema:
        bounds.append(f"at least {schema['minLength']} character(s)")
    if bounds:
        text += " " + ", ".join(bounds)
    description = schema.get("description")
    return f"{text} ({description})" if description else text


def describe_validation_error(
    tool: str, exc: ValidationError, properties: Mapping[str, Any]
) -> str:
    """One short line per invalid argument, naming it and what to send instead."""
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error.get("loc", ())]
        name = loc[0] if loc else "?"
        kind = str(error.get("type", ""))
        schema = properties.get(name)
        expected = _expected(schema) if isinstance(schema, Mapping) else "a valid value"
        if kind == "missing":
            lines.append(f"{tool}: missing required argument {name!r}; send {expected}")
        else:
            problem = str(error.get("msg", "invalid")).rstrip(".")
            lines.append(f"{tool}: invalid argument {name!r}: {problem}; send {expected}")
    return "\n".join(lines) or f"{tool}: invalid arguments"


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def _is_error(result: HandlerResult) -> bool:
    if isinstance(result, CallToolResult):
        return result.is_error
    return isinstance(result, dict) and bool(result.get("isError"))


def _without_sdk_prefix(tool: str, result: HandlerResult) -> HandlerResult:
    """Drop the SDK's "Error executing tool <name>: " from a tool error: it says nothing."""
    prefix = f"Error executing tool {tool}: "
    if isinstance(result, CallToolResult) and result.is_error:
        for block in result.content:
            if isinstance(block, TextContent) and block.text.startswith(prefix):
                block.text = block.text[len(prefix) :]
    elif isinstance(result, dict) and result.get("isError"):
        for block in result.get("content") or ():
            text = block.get("text") if isinstance(block, dict) else None
            if isinstance(text, str) and text.startswith(prefix):
                block["text"] = text[len(prefix) :]
    return result


def argument_checker(
    server: MCPServer[Any],
) -> Any:
    """A server middleware that refuses unknown or invalid ``tools/call`` arguments."""

    async def check(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call" or not isinstance(ctx.params, Mapping):
            return await call_next(ctx)
        name = ctx.params.get("name")
        arguments = ctx.params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, Mapping):
            return await call_next(ctx)
        tool = server._tool_manager.get_tool(name)
        if tool is None:
            return await call_next(ctx)
        properties: Mapping[str, Any] = tool.parameters.get("properties") or {}
        unknown = [key for key in arguments if key not in properties]
        if unknown:
            accepted = ", ".join(properties) or "no arguments"
            return _error(
                f"{name}: unknown argument(s) {', '.join(map(repr, unknown))}; "
                f"it accepts: {accepted}"
            )
        result = await call_next(ctx)
        if _is_error(result):
            # Rejected arguments: validate again (off the hot path) for a short message.
            try:
                tool.fn_metadata.validate_arguments(dict(arguments))
            except ValidationError as exc:
                return _error(describe_validation_error(name, exc, properties))
        return _without_sdk_prefix(name, result)

    return check
