"""How the tool adapters check the arguments of a call and word what is wrong.

Agent code calls CLI, HTTP and MCP tools the same way, with keyword arguments,
so an unknown, missing or non-JSON argument is reported in the same words
whichever kind of tool it is. Standard library only: the CLI adapter is loaded
without pydantic.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Final

from py_code_mode.errors import ToolError

__all__ = [
    "JSON_DATA",
    "RESERVED_CALLABLES",
    "reject_missing",
    "reject_unknown",
    "require_json",
    "show",
]

RESERVED_CALLABLES: Final = frozenset({"describe"})
"""Attributes of ``tools.<tool>`` in agent code that a callable could not shadow."""

JSON_DATA: Final = "JSON data (dicts, lists, strings, finite numbers, booleans, None)"
"""What JSON-only arguments may hold, as messages spell it out."""

_SHOW_CHARS: Final = 60


def show(value: Any) -> str:
    """A value's type and a short ``repr``, for messages about a wrong argument."""
    text = repr(value)
    if len(text) > _SHOW_CHARS:
        text = text[: _SHOW_CHARS - 3] + "..."
    return f"{type(value).__name__} {text}"


def reject_unknown(where: str, names: Iterable[str], accepted: Sequence[str], *, tool: str) -> None:
    """Raise unless every argument name is one of ``accepted``.

    Raises:
        ToolError: Naming the unknown arguments and listing the accepted ones.
    """
    unknown = [name for name in names if name not in accepted]
    if unknown:
        raise ToolError(
            f"{where}: unknown argument(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(accepted) or 'none'}",
            tool=tool,
        )


def reject_missing(
    where: str, missing: Sequence[str], *, tool: str, parameters: Sequence[str] | None = None
) -> None:
    """Raise when required arguments were not given.

    Args:
        where: Which tool and callable, for the message.
        missing: Names of the required arguments without a value.
        tool: The tool's name.
        parameters: All parameter names, listed in the message when given.

    Raises:
        ToolError: ``missing`` is not empty.
    """
    if not missing:
        return
    message = f"{where}: missing required argument(s) {', '.join(map(repr, missing))}"
    if parameters is not None:
        message += f"; parameters: {', '.join(parameters) or 'none'}"
    raise ToolError(message, tool=tool)


def require_json(where: str, value: object, what: str, *, tool: str) -> None:
    """Raise unless ``value`` can be sent as JSON (no NaN, infinities or lone surrogates).

    Args:
        where: Which tool and callable, for the message.
        value: The arguments that travel as JSON.
        what: How the message names them (``"arguments"``).
        tool: The tool's name.

    Raises:
        ToolError: Saying what is not JSON data.
    """
    try:
        # ensure_ascii=False and the encode: a lone surrogate is refused here, not by
        # the transport (which an MCP client takes for a lost connection).
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise ToolError(f"{where}: {what} must be {JSON_DATA}: {exc}", tool=tool) from None
