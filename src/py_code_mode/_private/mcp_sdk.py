"""Which ``mcp`` SDK is installed, and a clear refusal where 2.x is required.

The library core (Session, storage, executors, CLI and HTTP tools, the
integrations) never imports the SDK, so py-code-mode installs and runs beside
frameworks that hold ``mcp`` at 1.x (mbxai pins ``typing-inspection<=0.4.0``, which
only mcp <= 1.21 accepts; pybotchi's MCP client imports ``mcp.server.fastmcp``,
removed in 2.0). The MCP server and the MCP tool adapter are built on the 2.x SDK
(``MCPServer``, middleware, the high-level ``Client``); in an environment with 1.x
they refuse with the reason and the fix instead of failing on an import deep inside.
"""

from __future__ import annotations

from importlib import metadata

from py_code_mode.errors import ConfigError

__all__ = ["MIN_SDK", "mcp_major", "mcp_version", "require_mcp2"]

MIN_SDK = "2.3"
"""Oldest SDK the MCP server and MCP tools are built for."""


def mcp_version() -> str | None:
    """The installed ``mcp`` distribution's version, or None when it is missing."""
    try:
        return metadata.version("mcp")
    except metadata.PackageNotFoundError:
        return None


def mcp_major() -> int | None:
    """The installed SDK's major version, or None when it is missing or unreadable."""
    version = mcp_version()
    if version is None:
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def require_mcp2(feature: str) -> None:
    """Refuse ``feature`` unless the 2.x SDK is installed.

    Raises:
        ConfigError: The SDK is missing or older than 2.x; the message says how to
            run the MCP parts from an environment of their own.
    """
    major = mcp_major()
    if major is not None and major >= 2:
        return
    found = f"mcp {mcp_version()}" if major is not None else "no mcp package"
    raise ConfigError(
        f"{feature} needs the mcp SDK >= {MIN_SDK}, but this environment has {found} "
        "(another package, e.g. mbxai or pybotchi[mcp], holds it below 2). The Session "
        "API works here; run the MCP server from an environment of its own, e.g. "
        "`uvx --from py-code-mode py-code-mode-mcp`, or upgrade with `pip install 'mcp>=2.3'`."
    )
