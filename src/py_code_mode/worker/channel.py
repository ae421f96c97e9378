"""The worker's only way to reach the host."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["HostChannel"]


class HostChannel(Protocol):
    """Synchronous request/response to the host's capabilities.

    ``method`` is one of the host service names (``"tools.call"``,
    ``"workflows.get"``, ``"artifacts.save"``, ...); ``params`` and the return value
    are JSON data (bytes allowed). Failures raise a
    :class:`~.errors.PyCodeModeError` subclass built by
    :func:`~.errors.error_from_payload`.

    Called from the thread running agent code, never from an event loop the host
    needs: implementations must not deadlock when agent code runs inside its own
    event loop (top-level ``await``, ``async def run`` workflows).
    """

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """Perform one host call and return its result."""
        ...
