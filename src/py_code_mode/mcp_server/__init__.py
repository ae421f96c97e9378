"""``py-code-mode-mcp``: a py-code-mode session served over MCP (stdio or HTTP).

Importing this package is cheap; the MCP SDK is loaded by :func:`main`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from py_code_mode._private.mcp_sdk import require_mcp2
from py_code_mode.errors import ConfigError
from py_code_mode.mcp_server.options import ServerOptions, executor_available, parse_args

__all__ = ["ServerOptions", "configure_logging", "main", "parse_args", "run"]

logger = logging.getLogger(__name__)


def configure_logging(level: str | int = "WARNING") -> None:
    """Send log records to stderr: on stdio, stdout carries the protocol."""
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def run(options: ServerOptions) -> int:
    """Serve with ``options`` (a :class:`ServerOptions`) until stopped; the exit code.

    Returns:
        0 after a normal shutdown, 2 for a configuration error, 130 on Ctrl-C.
    """
    try:
        require_mcp2("the MCP server")
        options.check()
    except ConfigError as exc:
        print(f"py-code-mode-mcp: error: {exc}", file=sys.stderr)
        return 2
    if options.executor is None and not executor_available("subprocess"):
        logger.warning(
            "the subprocess executor is not installed; agent code runs inside the server "
            "process (in-process executor)"
        )
    logger.info(
        "serving %s over %s (executor: %s)",
        options.redis or options.storage_path,
        options.transport,
        options.executor_kind,
    )
    from py_code_mode.mcp_server.server import serve  # the MCP SDK: only when serving

    try:
        asyncio.run(serve(options))
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "py-code-mode-mcp") -> None:
    """Console entry point of ``py-code-mode-mcp``."""
    options = parse_args(argv, prog=prog)
    configure_logging(options.log_level)
    sys.exit(run(options))
