"""Relay a run's output to the client while the run is going.

Output chunks arrive from the worker as they are printed; the relay gathers them
and sends at most one notification per :data:`MIN_INTERVAL`: MCP progress when the
client asked for it (sent a progress token with the call), else a log message. The
final ``run_code`` reply is the same with or without a relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPDeprecationWarning

from py_code_mode._private.run_output import listening

__all__ = ["MAX_MESSAGE_CHARS", "MIN_INTERVAL", "relay_output"]

logger = logging.getLogger(__name__)

MIN_INTERVAL = 0.25
"""Seconds between two notifications of one run."""

MAX_MESSAGE_CHARS = 2_000
"""Characters of output per notification; older text of a burst is skipped."""


class _Relay:
    def __init__(self, ctx: Context[Any, Any]) -> None:
        self._ctx = ctx
        meta = ctx.request_context.meta
        self._progress = meta is not None and meta.get("progress_token") is not None
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._lines = 0
        self.pump_task: asyncio.Task[None] | None = None

    def feed(self, text: str) -> None:
        self._pending.append(text)
        self._wake.set()
        if self.pump_task is None:
            # Started on the first output, so a run that prints nothing costs nothing.
            self.pump_task = asyncio.get_running_loop().create_task(self.pump())

    async def pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(MIN_INTERVAL)

    async def flush(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._lines += text.count("\n")
        if len(text) > MAX_MESSAGE_CHARS:
            text = "..." + text[-MAX_MESSAGE_CHARS:]
        try:
            if self._progress:
                await self._ctx.report_progress(self._lines, None, text)
            else:
                with warnings.catch_warnings():
                    # Log notifications are what clients without progress support show.
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    await self._ctx.log("info", text, logger_name="run_code.stdout")
        except Exception as exc:  # noqa: BLE001 - a lost notification must not fail the run
            logger.debug("could not relay run output: %r", exc)


@contextlib.asynccontextmanager
async def relay_output(ctx: Context[Any, Any]) -> AsyncIterator[None]:
    """Relay output of runs started in this block to the client of ``ctx``."""
    relay = _Relay(ctx)
    try:
        with listening(relay.feed):
            yield
    finally:
        pump = relay.pump_task
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
