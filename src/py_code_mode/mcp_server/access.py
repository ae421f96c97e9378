"""Wiring of authentication and tenants into the MCP server.

Kept apart from the tool handlers: :func:`build_pool` gives the session pool its
tenants and limits, :func:`auth_settings` gives the SDK's ``MCPServer`` its
bearer-token hooks, so the server module needs only a few lines for either.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from py_code_mode.mcp_server.approval import approving_session
from py_code_mode.mcp_server.sessions import SessionPool

if TYPE_CHECKING:
    from py_code_mode.mcp_server.options import ServerOptions
    from py_code_mode.mcp_server.tenants import Tenancy

__all__ = ["auth_settings", "build_pool", "describe_access", "tenancy_for"]

logger = logging.getLogger(__name__)


def tenancy_for(options: ServerOptions) -> Tenancy | None:
    """The tenants of an authenticated HTTP server; ``None`` on stdio or with ``--no-auth``.

    Raises:
        ConfigError: HTTP without tokens and without ``--no-auth``, or bad tokens.
    """
    return options.tenancy() if options.transport == "http" else None


def build_pool(options: ServerOptions, tenancy: Tenancy | None = None) -> SessionPool:
    """The session pool of a server: per tenant on HTTP, one shared session on stdio."""
    http = options.transport == "http"
    return SessionPool(
        partial(approving_session, options),
        per_connection=http,
        tenancy=tenancy if http else None,
        tenant_factory=partial(approving_session, options),
        limits=options.limits if http else None,
    )


def auth_settings(options: ServerOptions, tenancy: Tenancy | None) -> dict[str, Any]:
    """Keyword arguments of ``MCPServer`` that turn on the SDK's bearer-token check.

    With them the SDK answers 401 to a request without a known token and binds
    each MCP session to the token that opened it (another token gets a 404 for
    that session id). Empty when the server runs without auth.
    """
    if options.transport != "http" or tenancy is None:
        return {}
    from mcp.server.auth.settings import AuthSettings

    # The issuer is required by the SDK's settings model but never contacted:
    # tokens are checked locally by the tenancy, no OAuth routes are served.
    issuer = f"http://{options.host}:{options.port}"
    return {
        "auth": AuthSettings(issuer_url=issuer, resource_server_url=None),  # type: ignore[arg-type]
        "token_verifier": tenancy,
    }


def describe_access(options: ServerOptions, tenancy: Tenancy | None) -> str:
    """The access mode in one line, with tenant names (never tokens) and limits."""
    mode = options.auth_mode()
    if tenancy is None:
        limits = options.limits
        return (
            f"{mode}; limits: {limits.max_sessions} sessions, {limits.max_runs} runs in "
            f"flight, idle timeout {limits.idle_timeout or 'none'}"
        )
    names = ", ".join(
        f"{t.name} ({t.limits.max_sessions} sessions, {t.limits.max_runs} runs, "
        f"idle {t.limits.idle_timeout or 'none'})"
        for t in tenancy.tenants
    )
    return f"{mode}; tenants: {names}"
