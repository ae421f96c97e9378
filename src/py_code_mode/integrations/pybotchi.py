"""A PyBotchi ``Action`` that runs Python in a py-code-mode Session, without MCP.

PyBotchi's MCP client opens a new MCP session on every ``context.start()``, so the
server's variables never outlive one conversation turn, and it needs mcp < 2 while
py-code-mode's MCP server needs mcp 2. This Action calls a :class:`Session` of the
agent's own process instead: variables persist for as long as the session does.

Importing this module imports PyBotchi (``pip install pybotchi``); nothing else in
py-code-mode does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pybotchi import Action, Context
from pydantic import Field

from py_code_mode.integrations.dispatch import call_tool
from py_code_mode.integrations.specs import RUN_CODE_DESCRIPTION

if TYPE_CHECKING:
    from py_code_mode.session import Session

__all__ = ["run_code_action"]


def run_code_action(session: Session, *, timeout: float | None = None) -> type[Any]:
    """A ``RunCode`` Action class bound to ``session``, to declare as a child Action.

    The model sees a tool named ``RunCode`` with one ``code`` argument; the result
    text (the MCP server's wording) becomes the Action's response.

    Args:
        session: Where the code runs; used from PyBotchi's event loop.
        timeout: Limit of one run in seconds (the session's default when None).
    """

    class RunCode(Action):  # type: ignore[misc]
        __doc__ = RUN_CODE_DESCRIPTION

        code: str = Field(description="Python source to run")

        async def pre(self, context: Context) -> None:
            text = await call_tool(session, "run_code", {"code": self.code}, timeout=timeout)
            await context.add_response(self, text)

    return RunCode
