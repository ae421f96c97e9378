"""Sessions for CLI commands, and progress display for their slow steps.

Commands that only read or edit the library (workflows, artifacts, the deps list,
tool listings) use a session whose executor runs nothing: listing workflows must
not create a virtual environment or install packages. Commands that run code or
change packages use the real executor.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from py_code_mode.errors import DependencyError
from py_code_mode.result import ExecutionResult

if TYPE_CHECKING:
    from py_code_mode._private.services import HostServices
    from py_code_mode.mcp_server.options import ServerOptions
    from py_code_mode.session import Session

__all__ = ["LibraryOnlyExecutor", "library_session", "run_with_progress", "using_session"]

_T = TypeVar("_T")

_SPINNER = "|/-\\"
_QUIET_SECONDS = 1.0


class LibraryOnlyExecutor:
    """An executor that runs no code: for commands that only touch storage and tools.

    Args:
        tools_path: Tool directory, so tool listings still work.
    """

    def __init__(self, tools_path: Path | None) -> None:
        self._tools_path = tools_path

    @property
    def tools_path(self) -> Path | None:
        """Directory of tool YAML files."""
        return self._tools_path

    @property
    def allow_runtime_deps(self) -> bool:
        """Package changes need a real executor."""
        return False

    @property
    def configured_deps(self) -> list[str]:
        """No configured packages."""
        return []

    async def start(self, host: HostServices) -> None:
        """Nothing to start."""

    async def run(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Refuse: this session is for library commands."""
        return ExecutionResult.failure(
            "this CLI session runs no code; use `py-code-mode run`", "ExecutorError"
        )

    async def reset(self) -> None:
        """Nothing to reset."""

    async def close(self) -> None:
        """Nothing to close."""

    async def install(self, specs: Sequence[str]) -> str:
        """Refuse: installing needs the real execution environment."""
        raise DependencyError("installing packages needs an executor; use `py-code-mode deps add`")

    async def uninstall(self, names: Sequence[str]) -> str:
        """Refuse: uninstalling needs the real execution environment."""
        raise DependencyError("removing packages needs an executor; use `py-code-mode deps rm`")


def library_session(options: ServerOptions) -> Session:
    """A session on the library that never starts a worker."""
    from py_code_mode.session import Session

    return Session(storage=options.make_storage(), executor=LibraryOnlyExecutor(options.tools_path))


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
    session: Session, action: Callable[[Session], Coroutine[Any, Any, _T]], *, starting: str
) -> _T:
    """Start ``session`` (with progress), run ``action`` on it, close it; the result."""

    async def go() -> _T:
        try:
            await run_with_progress(starting, session.start())
            return await action(session)
        finally:
            await session.close()

    return asyncio.run(go())
