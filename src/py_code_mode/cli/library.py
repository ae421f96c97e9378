"""Sessions for CLI commands, and progress display for their slow steps.

Commands that only read or edit the library (workflows, artifacts, the deps list,
tool listings) never start the session's executor: listing workflows must not
create a virtual environment or install packages. Commands that run code or
change packages start it.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from py_code_mode.session import Session

__all__ = ["run_with_progress", "using_session"]

_T = TypeVar("_T")

_SPINNER = "|/-\\"
_QUIET_SECONDS = 1.0


async def run_with_progress(message: str, awaitable: Awaitable[_T]) -> _T:
    """Await ``awaitable``, telling the user on stderr when it takes a while.

    On a terminal a spinner with the elapsed time appears after a second; otherwise
    one line is printed, so logs of non-interactive runs still explain a pause.
    """
    task = asyncio.ensure_future(awaitable)
    started = time.monotonic()
    try:
        done, _ = await asyncio.wait({task}, timeout=_QUIET_SECONDS)
        if done:
            return task.result()
        interactive = sys.stderr.isatty()
        if not interactive:
            print(f"{message} ...", file=sys.stderr, flush=True)
            return await task
        for frame in itertools.cycle(_SPINNER):
            elapsed = time.monotonic() - started
            print(f"\r{frame} {message} ({elapsed:.0f} s)", end="", file=sys.stderr, flush=True)
            done, _ = await asyncio.wait({task}, timeout=0.1)
            if done:
                print(f"\r{' ' * (len(message) + 16)}\r", end="", file=sys.stderr, flush=True)
                return task.result()
        raise AssertionError("unreachable")
    finally:
        if not task.done():
            task.cancel()


def using_session(
    session: Session,
    action: Callable[[Session], Coroutine[Any, Any, _T]],
    *,
    starting: str | None,
) -> _T:
    """Start ``session`` (with progress), run ``action`` on it, close it; the result.

    ``starting`` names the start in progress output. With ``None`` only what
    ``action`` needs is started: library calls open storage and tools but leave the
    executor alone.
    """

    async def go() -> _T:
        try:
            if starting is not None:
                await run_with_progress(starting, session.start())
            return await action(session)
        finally:
            await session.close()

    return asyncio.run(go())
