"""Approval of tool calls marked ``confirm``: who is asked, and what they are shown.

A tool (or one recipe of it) marked ``confirm: true`` in its YAML, or matched by a
``Session(confirm=[...])`` pattern, runs only after the session's approver said yes.
The approver is ``Session(approve=...)`` for library users; the MCP server asks its
client through an elicitation request. Without an approver, or when it says no, the
call raises :class:`~py_code_mode.errors.ToolDeniedError` in agent code.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from py_code_mode.errors import ToolDeniedError

if TYPE_CHECKING:
    from py_code_mode.tools.registry import ToolRegistry

__all__ = ["ApprovalRequest", "Approver"]

logger = logging.getLogger(__name__)

_SECRET_KEY: Final = re.compile(
    r"pass|secret|token|api[_-]?key|auth|credential|cookie|private", re.IGNORECASE
)
_MASK: Final = "***"
_SHOWN_CHARS: Final = 200


@dataclass(frozen=True)
class ApprovalRequest:
    """One call waiting for approval.

    Attributes:
        tool: The tool's name.
        callable: The callable or recipe, or ``None`` for the tool itself.
        arguments: The call's arguments; values under secret-looking names
            (``token``, ``password``, ``api_key``...) are masked and long text is cut.
        reason: Why approval is needed (the YAML mark or the session pattern).
    """

    tool: str
    callable: str | None
    arguments: Mapping[str, Any]
    reason: str

    @property
    def target(self) -> str:
        """``tools.<tool>[.<callable>]``, as agent code wrote it."""
        return f"tools.{self.tool}" + (f".{self.callable}" if self.callable else "")

    def describe(self) -> str:
        """One paragraph for a person: what will run, with which arguments, and why."""
        shown = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"Agent code wants to call {self.target}({shown}). Approval needed: {self.reason}."


Approver = Callable[[ApprovalRequest], bool | Awaitable[bool]]
"""Sync or async callable answering an :class:`ApprovalRequest`: ``True`` to allow.

A sync approver runs in a worker thread, so it may block (e.g. prompt on a terminal).
It may raise :class:`~py_code_mode.errors.ToolDeniedError` to refuse with its own
message; any other exception refuses the call too.
"""


@dataclass
class Approvals:
    """The approval policy of one session (host side)."""

    approve: Approver | None = None
    patterns: Sequence[str] = ()
    how_to_allow: str = field(
        default="pass Session(approve=callable) to ask someone, or remove the "
        "`confirm: true` mark (or the Session(confirm=[...]) pattern) that matches it"
    )

    def reason(self, tools: ToolRegistry, tool: str, callable_name: str | None) -> str | None:
        """Why the call needs approval, or ``None`` when it does not."""
        marked = tools.confirm_reason(tool, callable_name)
        if marked is not None:
            return marked
        names = [tool] if callable_name is None else [tool, f"{tool}.{callable_name}"]
        for pattern in self.patterns:
            if any(fnmatch.fnmatchcase(name, pattern) for name in names):
                return f"it matches the session's confirm pattern {pattern!r}"
        return None

    async def check(
        self, tools: ToolRegistry, tool: str, callable_name: str | None, args: Mapping[str, Any]
    ) -> None:
        """Return when the call may run.

        Raises:
            ToolDeniedError: Approval was needed and not given.
        """
        reason = self.reason(tools, tool, callable_name)
        if reason is None:
            return
        request = ApprovalRequest(tool, callable_name, mask_arguments(args), reason)
        if self.approve is None:
            raise ToolDeniedError(
                f"{request.target} needs approval ({reason}) and nobody can be asked in "
                f"this session; to allow it, {self.how_to_allow}",
                tool=tool,
            )
        try:
            allowed = await _ask(self.approve, request)
        except ToolDeniedError:
            raise
        except Exception as exc:
            logger.warning("approver failed for %s", request.target, exc_info=exc)
            raise ToolDeniedError(
                f"{request.target} was not approved: the approver failed "
                f"({type(exc).__name__}: {exc})",
                tool=tool,
            ) from exc
        if allowed is not True:
            raise ToolDeniedError(f"{request.target} was denied by the approver", tool=tool)
        logger.info("approved %s (%s)", request.target, reason)


async def _ask(approve: Approver, request: ApprovalRequest) -> object:
    if inspect.iscoroutinefunction(approve) or inspect.iscoroutinefunction(
        getattr(approve, "__call__", None)  # noqa: B004 - an async __call__ method
    ):
        answer: object = approve(request)
    else:
        answer = await asyncio.to_thread(approve, request)
    if inspect.isawaitable(answer):
        answer = await answer
    return answer


def mask_arguments(args: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` for showing to a person: secret-looking names masked, long text cut."""
    return {str(key): _shown(str(key), value) for key, value in args.items()}


def _shown(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key):
        return _MASK
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        return value[:_SHOWN_CHARS] + f"... ({len(value):,} characters)"
    if isinstance(value, Mapping):
        return {str(k): _shown(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shown("", v) for v in value]
    return value
