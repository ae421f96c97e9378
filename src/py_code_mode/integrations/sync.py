"""A blocking face of :class:`~py_code_mode.Session`, for frameworks whose tools are sync.

The session lives on an event loop of its own, in a daemon thread this object owns,
and every method hands its coroutine to that loop and waits. So it works from
plain threads and also from inside a running event loop's thread (which a sync
tool of an async framework often is): the caller's loop is blocked for the call,
but never re-entered.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from py_code_mode.errors import SessionClosedError
from py_code_mode.integrations.dispatch import call_tool
from py_code_mode.mcp_server.formatting import DEFAULT_MAX_CHARS

if TYPE_CHECKING:
    from py_code_mode.result import ExecutionResult
    from py_code_mode.session import Session

__all__ = ["SyncSession"]

_T = TypeVar("_T")


class SyncSession:
    """Blocking methods over an async :class:`~py_code_mode.Session`.

    Use it as a context manager, or call :meth:`close` when done: closing stops
    the session (its worker) and the thread.

    Args:
        session: A session not used by any other event loop.
        call_timeout: Seconds any one call may block before :class:`TimeoutError`
            (None: no limit beyond the session's own run timeout). The caller stops
            waiting; a run already under way still finishes or hits its own timeout,
            and the next call waits for it.
    """

    def __init__(self, session: Session, *, call_timeout: float | None = None) -> None:
        self.session = session
        self._call_timeout = call_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="py-code-mode-sync", daemon=True
        )
        self._thread.start()
        self._closed = False

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "SyncSession was called from its own event-loop thread; await the "
                "coroutine methods of .session there instead"
            )
        if self._closed:
            coro.close()
            raise SessionClosedError("this SyncSession is closed; create a new one")
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self._call_timeout)
        except TimeoutError:
            future.cancel()
            raise

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the session (otherwise the first call does)."""
        self._call(self.session.start())

    def close(self) -> None:
        """Close the session and stop the loop thread; idempotent."""
        if self._closed:
            return
        try:
            self._call(self.session.close())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the model's view ----------------------------------------------------------------
    def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | str | None = None,
        *,
        timeout: float | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> str:
        """:func:`~py_code_mode.integrations.call_tool`, blocking."""
        return self._call(
            call_tool(self.session, name, arguments, timeout=timeout, max_chars=max_chars)
        )

    def run_code(self, code: str, timeout: float | None = None) -> str:
        """Run code and return the text a model should read."""
        return self.call_tool("run_code", {"code": code}, timeout=timeout)

    # -- the Session facade, blocking -----------------------------------------------------
    def run(self, code: str, timeout: float | None = None) -> ExecutionResult:
        """:meth:`Session.run <py_code_mode.Session.run>`, blocking."""
        return self._call(self.session.run(code, timeout=timeout))

    def reset(self) -> None:
        """Clear the session's variables."""
        self._call(self.session.reset())

    def list_tools(self) -> list[dict[str, Any]]:
        """Configured tools and their callables."""
        return self._call(self.session.list_tools())

    def search_tools(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        """Tools for a task, best first."""
        return self._call(self.session.search_tools(query, limit))

    def list_workflows(self) -> list[dict[str, Any]]:
        """Saved workflows."""
        return self._call(self.session.list_workflows())

    def search_workflows(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """Workflows for a task, best first."""
        return self._call(self.session.search_workflows(query, limit))

    def get_workflow(self, name: str) -> dict[str, Any] | None:
        """One workflow with its source, or None."""
        return self._call(self.session.get_workflow(name))

    def add_workflow(self, name: str, source: str, description: str = "") -> dict[str, Any]:
        """Save a workflow."""
        return self._call(self.session.add_workflow(name, source, description))

    def remove_workflow(self, name: str) -> bool:
        """Delete a workflow; whether it existed."""
        return self._call(self.session.remove_workflow(name))

    def list_artifacts(self) -> list[dict[str, Any]]:
        """Stored artifacts."""
        return self._call(self.session.list_artifacts())

    def save_artifact(
        self,
        name: str,
        data: Any,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store data under a name."""
        return self._call(self.session.save_artifact(name, data, description, metadata))

    def load_artifact(self, name: str) -> Any:
        """Stored data by name."""
        return self._call(self.session.load_artifact(name))

    def delete_artifact(self, name: str) -> bool:
        """Delete an artifact; whether it existed."""
        return self._call(self.session.delete_artifact(name))

    def list_deps(self) -> list[str]:
        """Persisted package specs."""
        return self._call(self.session.list_deps())

    def add_dep(self, spec: str) -> dict[str, Any]:
        """Install a package and keep it listed."""
        return self._call(self.session.add_dep(spec))

    def remove_dep(self, spec: str) -> bool:
        """Uninstall a package; whether it was listed."""
        return self._call(self.session.remove_dep(spec))

    def sync_deps(self) -> dict[str, Any]:
        """Install every listed package."""
        return self._call(self.session.sync_deps())
