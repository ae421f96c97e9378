"""Which ``mcp`` SDK is installed, and a clear refusal where it will not do.

The library core (Session, storage, executors, CLI and HTTP tools, the
integrations) never imports the SDK, so py-code-mode installs and runs beside
frameworks that hold ``mcp`` at 1.x (mbxai pins ``typing-inspection<=0.4.0``, which
only mcp <= 1.21 accepts; pybotchi's MCP client imports ``mcp.server.fastmcp``,
removed in 2.0).

The MCP tool adapter (``type: mcp``) works with 1.21+ and 2.x through
:mod:`py_code_mode._private.mcp_client`; it refuses only when no SDK is installed.
The MCP server is built on 2.x-only APIs (``MCPServer``, its middleware and
``ServerRequestContext``, ``Connection``, the ``mcp_types`` package, the auth
settings); with 1.x it refuses with the reason and the fix instead of failing on
an import deep inside. Run it from an environment of its own beside a 1.x
framework: ``uvx --from py-code-mode py-code-mode-mcp``.
"""

from __future__ import annotations

import contextlib
from importlib import metadata

from py_code_mode.errors import ConfigError

__all__ = [
    "MIN_CLIENT_SDK",
    "MIN_SDK",
    "mcp_major",
    "mcp_version",
    "require_mcp2",
    "require_mcp_client",
]

MIN_SDK = "2.3"
"""Oldest SDK the MCP server is built for."""
MIN_CLIENT_SDK = "1.21"
"""Oldest SDK the MCP tool adapter is tested with (.ci/mcp1.sh)."""


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


def require_mcp_client(feature: str) -> None:
    """Refuse ``feature`` unless an SDK the MCP tool adapter supports is installed.

    Raises:
        ConfigError: The SDK is missing or older than :data:`MIN_CLIENT_SDK`.
    """
    from packaging.version import InvalidVersion, Version  # only where MCP tools load

    version = mcp_version()
    with contextlib.suppress(InvalidVersion):
        if version is not None and Version(version) >= Version(MIN_CLIENT_SDK):
            return
    found = f"mcp {version}" if version is not None else "no mcp package"
    raise ConfigError(
        f"{feature} needs the mcp SDK >= {MIN_CLIENT_SDK} (1.x or 2.x), but this "
        f"environment has {found}; install it with `pip install 'mcp>={MIN_CLIENT_SDK}'`."
    )


def require_mcp2(feature: str) -> None:
    """Refuse ``feature`` (the MCP server) unless the 2.x SDK is installed.

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
        "API and MCP tools (`type: mcp`) work here; run the MCP server from an environment "
        "of its own, e.g. `uvx --from py-code-mode py-code-mode-mcp`, or upgrade with "
        f"`pip install 'mcp>={MIN_SDK}'` where nothing holds it back."
    )
