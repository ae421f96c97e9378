"""Exceptions raised by py-code-mode.

Every exception the library raises derives from :class:`PyCodeModeError`. The tree is
defined once, in the stdlib-only worker package (:mod:`py_code_mode.worker.errors`,
where its hierarchy is drawn), so a failure is the same class with the same bases
whether it surfaces from :class:`~py_code_mode.Session`, inside agent code, over MCP
or in the CLI. Third-party errors are translated at the boundary with
``raise ... from exc``, keeping the original as ``__cause__``.

Errors in *agent* code are never raised through the library: they come back as data
in :class:`~py_code_mode.ExecutionResult`.
"""

from __future__ import annotations

import logging
from typing import Any

from py_code_mode.worker import errors as _tree
from py_code_mode.worker.errors import *  # noqa: F403  (the one tree, defined there)
from py_code_mode.worker.errors import (
    PyCodeModeError,
    QuotaExceededError,
    ToolError,
    translate,
)

__all__ = [name for name in _tree.__all__ if name.endswith("Error")]  # the classes only

logger = logging.getLogger(__name__)


def error_payload(exc: BaseException) -> dict[str, Any]:
    """Describe a host-side failure as JSON for the worker to re-raise.

    Library errors keep their class name and message. Anything else becomes the class
    :func:`translate` gives it, with a message free of host details (paths, URLs):
    those go to the host's log with the traceback.
    """
    if isinstance(exc, PyCodeModeError):
        payload: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, ToolError):
            payload.update(tool=exc.tool, stderr=exc.stderr)
        if isinstance(exc, QuotaExceededError):
            payload.update(quota=exc.quota, value=exc.value, limit=exc.limit)
        return payload
    logger.error("host service failed", exc_info=exc)
    return {
        "type": type(translate(exc, "the host call")).__name__,
        "message": f"internal error on the host: {type(exc).__name__}",
    }
