"""Execution sessions behind MCP connections.

Over stdio there is one client, so one session. Over streamable HTTP each client
connection (an ``Mcp-Session-Id``) gets its own session: variables are private to
the client, while the storage location (workflows, artifacts, deps) is shared.
Requests without a connection identity (the stateless 2026-07-28 protocol) share
one session.

Sessions start in the background as soon as a client has initialized, so the
``initialize`` answer never waits for a worker. Running code awaits the start;
library calls (workflows, artifacts, the deps list, tools) need only storage and
tools, which the session opens by itself, so they do not wait for the executor.
Closing is handed to background tasks, which :meth:`SessionPool.aclose` awaits at
shutdown, so no worker process outlives the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from py_code_mode.errors import PyCodeModeError

if TYPE_CHECKING:
    from mcp.server.connection import Connection

    from py_code_mode.session import Session

__all__ = ["SessionPool", "SessionStartError", "connection_of"]

logger = logging.getLogger(__name__)

_SHARED = ""
_CLOSE_TIMEOUT = 30.0


class SessionStartError(PyCodeModeError):
    """The execution session could not start; the next call tries again."""


@dataclass
class _Slot:
    session: Session
    started: asyncio.Task[None]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def connection_of(request_context: Any) -> Connection | None:
    """The MCP connection a request arrived on, or ``None`` when it has none.

    mcp 2.3 keeps the per-connection object (with its id and teardown stack) on the
    request's session without a public accessor, so this is the one place that
    reaches for it; a later SDK without it degrades to one shared session.
    """
    from mcp.server.connection import Connection

    session = getattr(request_context, "session", None)
    connection = getattr(session, "_connection", None)
    return connection if isinstance(connection, Connection) else None


class SessionPool:
    """Creates, starts and closes the execution sessions of a server.

    Args:
        factory: Builds a new, not yet started session.
        per_connection: Give each identified connection its own session (HTTP);
            otherwise all requests share one (stdio).
    """

    def __init__(self, factory: Callable[[], Session], *, per_connection: bool) -> None:
        self._factory = factory
        self._per_connection = per_connection
        self._slots: dict[str, _Slot] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._warned_stateless = False

    def __len__(self) -> int:
        return len(self._slots)

    def key_for(self, request_context: Any) -> str:
        """Which session serves a request, registering cleanup for new connections."""
        if not self._per_connection:
            return _SHARED
        connection = connection_of(request_context)
        if connection is None or not connection.session_id:
            if not self._warned_stateless:
                self._warned_stateless = True
                logger.info(
                    "a client without an MCP session id (stateless protocol) shares "
                    "one execution session with other such clients"
                )
            return _SHARED
        key = connection.session_id
        if not connection.state.get("py_code_mode.registered"):
            connection.state["py_code_mode.registered"] = True
            connection.exit_stack.callback(self.release, key)
        return key

    def warm(self, request_context: Any) -> None:
        """Create and start the session of a request's client without waiting."""
        if self._closed:
            return
        self._slot(self.key_for(request_context))

    def library(self, request_context: Any) -> Session:
        """The session for a request's library calls, without waiting for its executor.

        Raises:
            SessionStartError: The server is shutting down.
        """
        if self._closed:
            raise SessionStartError("the server is shutting down")
        return self._slot(self.key_for(request_context)).session

    async def get(self, request_context: Any) -> tuple[Session, asyncio.Lock]:
        """The started session for a request, and a lock to serialise its runs.

        Raises:
            SessionStartError: Starting failed; the slot is discarded so a later call
                tries again with a fresh session.
        """
        if self._closed:
            raise SessionStartError("the server is shutting down")
        key = self.key_for(request_context)
        slot = self._slot(key)
        try:
            # Shielded: one cancelled request must not abort a start others wait on.
            await asyncio.shield(slot.started)
        except asyncio.CancelledError:
            if not slot.started.cancelled():
                raise
            self._discard(key, slot)
            raise SessionStartError("the execution session start was cancelled") from None
        except Exception as exc:
            self._discard(key, slot)
            raise SessionStartError(
                f"the execution session could not start: {type(exc).__name__}: {exc}"
            ) from exc
        return slot.session, slot.lock

    def release(self, key: str) -> None:
        """Close the session of a connection that ended (in the background)."""
        slot = self._slots.get(key)
        if slot is not None:
            logger.info("client session %s ended; closing its execution session", key[:12])
            self._discard(key, slot)

    async def aclose(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Close every session and wait (bounded) for all closes to finish."""
        self._closed = True
        for key, slot in list(self._slots.items()):
            self._discard(key, slot)
        pending = set(self._closing)
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            task.cancel()
        if still:
            logger.warning(
                "%d execution session(s) did not close within %.0f s", len(still), timeout
            )

    def _slot(self, key: str) -> _Slot:
        slot = self._slots.get(key)
        if slot is None:
            session = self._factory()
            task = asyncio.get_running_loop().create_task(
                self._start(session), name=f"py-code-mode start {key[:12] or 'shared'}"
            )
            slot = self._slots[key] = _Slot(session, task)
        return slot

    @staticmethod
    async def _start(session: Session) -> None:
        try:
            await session.start()
        except Exception:
            logger.exception("the execution session failed to start")
            raise

    def _discard(self, key: str, slot: _Slot) -> None:
        if self._slots.get(key) is slot:
            del self._slots[key]
        task = asyncio.get_running_loop().create_task(self._close(slot))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(slot: _Slot) -> None:
        if not slot.started.done():
            slot.started.cancel()
        try:
            await asyncio.gather(slot.started, return_exceptions=True)
            await slot.session.close()
        except Exception:
            logger.exception("closing an execution session failed")
