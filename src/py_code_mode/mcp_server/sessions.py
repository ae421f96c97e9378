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

With tenants (HTTP with bearer tokens, see :mod:`.tenants`), each session belongs
to the tenant whose token opened it, is built on that tenant's storage, and counts
against its limits: sessions open at once, runs in flight, and an idle timeout
after which the session's worker is stopped (the next run says so).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from py_code_mode.errors import PyCodeModeError
from py_code_mode.mcp_server.tenants import ANONYMOUS_NAME, Tenancy, Tenant, TenantLimits, tenant_of

if TYPE_CHECKING:
    from mcp.server.connection import Connection

    from py_code_mode.session import Session

__all__ = [
    "SessionExpiredError",
    "SessionPool",
    "SessionStartError",
    "TenantLimitError",
    "connection_of",
]

logger = logging.getLogger(__name__)

_SHARED = ""
_CLOSE_TIMEOUT = 30.0


class SessionStartError(PyCodeModeError):
    """The execution session could not start; the next call tries again."""


class TenantLimitError(SessionStartError):
    """A tenant limit (sessions or runs in flight) refused the call; nothing was run."""


class SessionExpiredError(SessionStartError):
    """The session's worker was stopped after its idle timeout; variables are lost."""


class _RunGate(asyncio.Lock):
    """The per-session run lock, which also takes one of the tenant's run slots."""

    def __init__(self, pool: SessionPool, slot: _Slot) -> None:
        super().__init__()
        self._pool = pool
        self._slot = slot

    async def acquire(self) -> Literal[True]:
        from mcp.server.mcpserver.exceptions import ToolError

        await super().acquire()
        try:
            self._pool._begin_run(self._slot)
        except TenantLimitError as exc:
            super().release()
            # Raised inside the handler's ``async with``: only a ToolError reaches
            # the client with its message.
            raise ToolError(str(exc)) from exc
        except BaseException:
            super().release()
            raise
        return True

    def release(self) -> None:
        self._pool._end_run(self._slot)
        super().release()


@dataclass
class _Slot:
    session: Session
    started: asyncio.Task[None]
    tenant: str = ""
    limits: TenantLimits | None = None
    last_used: float = field(default_factory=time.monotonic)
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
        tenancy: The tenants of an authenticated server; each session is then built
            by ``tenant_factory`` for the tenant of the request's token.
        tenant_factory: Builds a session on a tenant's storage.
        limits: Limits of unauthenticated callers (``--no-auth``); ``None`` for none.
    """

    def __init__(
        self,
        factory: Callable[[], Session],
        *,
        per_connection: bool,
        tenancy: Tenancy | None = None,
        tenant_factory: Callable[[Tenant], Session] | None = None,
        limits: TenantLimits | None = None,
    ) -> None:
        if tenancy is not None and tenant_factory is None:
            raise ValueError("tenancy needs a tenant_factory")
        self._factory = factory
        self._per_connection = per_connection
        self._tenancy = tenancy
        self._tenant_factory = tenant_factory
        self._anonymous_limits = limits
        self._slots: dict[str, _Slot] = {}
        self._runs: dict[str, int] = {}
        self._expired: dict[str, float] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._warned_stateless = False

    def sessions_of(self, tenant: str) -> int:
        """Execution sessions open for ``tenant`` (``"anonymous"`` without auth)."""
        return sum(1 for slot in self._slots.values() if slot.tenant == tenant)

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
                    "one execution session with other such clients of its tenant"
                )
            # Tenants never share: the shared session is per tenant.
            return f"{_SHARED}\0{self._tenant_name(request_context)}"
        key = connection.session_id
        if not connection.state.get("py_code_mode.registered"):
            connection.state["py_code_mode.registered"] = True
            connection.exit_stack.callback(self.release, key)
        return key

    def warm(self, request_context: Any) -> None:
        """Create and start the session of a request's client without waiting."""
        if self._closed:
            return
        try:
            self._slot(self.key_for(request_context), request_context)
        except TenantLimitError as exc:
            logger.info("not starting a session: %s", exc)

    def library(self, request_context: Any) -> Session:
        """The session for a request's library calls, without waiting for its executor.

        Raises:
            SessionStartError: The server is shutting down.
        """
        if self._closed:
            raise SessionStartError("the server is shutting down")
        slot = self._slot(self.key_for(request_context), request_context)
        slot.last_used = time.monotonic()
        return slot.session

    async def get(self, request_context: Any) -> tuple[Session, asyncio.Lock]:
        """The started session for a request, and a lock to serialise its runs.

        Raises:
            SessionStartError: Starting failed; the slot is discarded so a later call
                tries again with a fresh session.
        """
        if self._closed:
            raise SessionStartError("the server is shutting down")
        key = self.key_for(request_context)
        slot = self._slot(key, request_context)
        idle = self._expired.pop(key, None)
        if idle is not None:
            raise SessionExpiredError(
                f"this session was idle for more than {idle:g} s, so its worker was stopped "
                "and its variables are lost (workflows and artifacts are kept); call again "
                "to run in a fresh session"
            )
        slot.last_used = time.monotonic()
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
        self._expired.pop(key, None)
        slot = self._slots.get(key)
        if slot is not None:
            logger.info("client session %s ended; closing its execution session", key[:12])
            self._discard(key, slot)

    async def aclose(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Close every session and wait (bounded) for all closes to finish."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
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

    def _tenant_name(self, request_context: Any) -> str:
        if self._tenancy is None:
            return ANONYMOUS_NAME if self._anonymous_limits is not None else ""
        name = tenant_of(request_context)
        if name is None or self._tenancy.get(name) is None:
            # The SDK's auth middleware refuses such requests before they get here.
            raise SessionStartError("this request carries no known bearer token")
        return name

    def _limits_of(self, tenant: str) -> TenantLimits | None:
        if self._tenancy is not None:
            found = self._tenancy.get(tenant)
            return None if found is None else found.limits
        return self._anonymous_limits

    def _slot(self, key: str, request_context: Any = None) -> _Slot:
        slot = self._slots.get(key)
        if slot is not None:
            return slot
        tenant = self._tenant_name(request_context) if self._per_connection else ""
        limits = self._limits_of(tenant)
        if limits is not None and self.sessions_of(tenant) >= limits.max_sessions:
            raise TenantLimitError(
                f"tenant {tenant!r} already has {limits.max_sessions} execution sessions open "
                f"(max_sessions={limits.max_sessions}); end another client session or wait "
                "for one to go idle"
            )
        if self._tenancy is not None and self._tenant_factory is not None:
            found = self._tenancy.get(tenant)
            assert found is not None  # _tenant_name checked it
            session = self._tenant_factory(found)
        else:
            session = self._factory()
        task = asyncio.get_running_loop().create_task(
            self._start(session), name=f"py-code-mode start {key[:12] or 'shared'}"
        )
        slot = self._slots[key] = _Slot(session, task, tenant, limits)
        slot.lock = _RunGate(self, slot)
        if limits is not None and limits.idle_timeout is not None and self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(
                self._reap_idle(), name="py-code-mode idle reaper"
            )
        return slot

    def _begin_run(self, slot: _Slot) -> None:
        limits = slot.limits
        running = self._runs.get(slot.tenant, 0)
        if limits is not None and running >= limits.max_runs:
            raise TenantLimitError(
                f"tenant {slot.tenant!r} already has {running} runs in flight "
                f"(max_runs={limits.max_runs}); wait for one to finish and call again"
            )
        self._runs[slot.tenant] = running + 1
        slot.last_used = time.monotonic()

    def _end_run(self, slot: _Slot) -> None:
        left = self._runs.get(slot.tenant, 1) - 1
        if left > 0:
            self._runs[slot.tenant] = left
        else:
            self._runs.pop(slot.tenant, None)
        slot.last_used = time.monotonic()

    def reap_idle(self, now: float | None = None) -> list[str]:
        """Stop the sessions idle longer than their tenant's timeout; their keys.

        A session running code is never idle. Its client's next run is told that
        the worker was stopped (:class:`SessionExpiredError`).
        """
        now = time.monotonic() if now is None else now
        reaped: list[str] = []
        for key, slot in list(self._slots.items()):
            timeout = None if slot.limits is None else slot.limits.idle_timeout
            if timeout is None or slot.lock.locked() or now - slot.last_used < timeout:
                continue
            logger.info(
                "session %s of tenant %r idle for %.0f s; stopping its worker",
                key[:12],
                slot.tenant,
                now - slot.last_used,
            )
            self._expired[key] = timeout
            self._discard(key, slot)
            reaped.append(key)
        return reaped

    async def _reap_idle(self) -> None:
        while not self._closed:
            timeouts = [
                slot.limits.idle_timeout
                for slot in self._slots.values()
                if slot.limits is not None and slot.limits.idle_timeout is not None
            ]
            await asyncio.sleep(min([30.0, *(t / 4 for t in timeouts)]))
            self.reap_idle()

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
