"""Approval over MCP: a call marked ``confirm`` asks the client by elicitation.

The approver of a session is asked from the worker's host channel, not from the
``run_code`` request itself, so :meth:`ClientApprover.asking` records which request
is running code in the session (one at a time: ``run_code`` holds the session's
lock). A client that did not declare the elicitation capability cannot be asked;
the call is then refused with a message saying how to allow it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from py_code_mode.errors import ToolDeniedError

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context

    from py_code_mode.approval import ApprovalRequest
    from py_code_mode.mcp_server.options import ServerOptions
    from py_code_mode.mcp_server.tenants import Tenant
    from py_code_mode.session import Session

__all__ = ["ClientApprover", "approving_session"]

logger = logging.getLogger(__name__)


def approving_session(options: ServerOptions, tenant: Tenant | None = None) -> Session:
    """A new session whose ``confirm`` calls ask the MCP client (``tenant``'s storage, if given)."""
    if tenant is None:
        return options.make_session(approve=ClientApprover())
    return options.make_tenant_session(tenant, approve=ClientApprover())


class ApprovalAnswer(BaseModel):
    """What the client is asked to fill in (a single checkbox)."""

    approve: bool = Field(default=True, description="Allow this tool call")


class ClientApprover:
    """An ``approve`` hook of :class:`~py_code_mode.Session` that asks the MCP client."""

    def __init__(self) -> None:
        self._ctx: Context[Any, Any] | None = None

    @contextmanager
    def asking(self, ctx: Context[Any, Any]) -> Iterator[None]:
        """Within the block, approval requests go to the client of ``ctx``."""
        previous, self._ctx = self._ctx, ctx
        try:
            yield
        finally:
            self._ctx = previous

    async def __call__(self, request: ApprovalRequest) -> bool:
        """Ask the client; ``True`` only when it accepted with ``approve`` checked.

        Raises:
            ToolDeniedError: The client cannot be asked (no elicitation support, no
                request in progress, or the request failed).
        """
        ctx = self._ctx
        capabilities = None if ctx is None else ctx.request_context.session.client_capabilities
        if ctx is None or capabilities is None or capabilities.elicitation is None:
            raise ToolDeniedError(
                f"{request.target} needs approval ({request.reason}), and this MCP client "
                "cannot be asked: it does not support elicitation. To allow it, connect "
                "with a client that supports MCP elicitation, or remove `confirm: true` "
                "from the tool's YAML (or the --confirm pattern that matches it) and "
                "restart the server",
                tool=request.tool,
            )
        try:
            answer = await ctx.elicit(f"{request.describe()} Allow it?", schema=ApprovalAnswer)
        except Exception as exc:
            logger.warning("elicitation for %s failed", request.target, exc_info=exc)
            raise ToolDeniedError(
                f"{request.target} needs approval and asking the MCP client failed "
                f"({type(exc).__name__}); the call was not made",
                tool=request.tool,
            ) from exc
        if answer.action != "accept":
            raise ToolDeniedError(
                f"{request.target} was not approved: the MCP client answered {answer.action!r}",
                tool=request.tool,
            )
        return bool(answer.data.approve)
