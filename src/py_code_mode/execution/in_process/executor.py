"""In-process executor: agent code runs in a thread of the host process.

For trusted code and maximum speed. Code runs on a dedicated thread so the event
loop stays free to serve the namespace calls it makes; a timeout raises an
asynchronous exception in that thread, which stops pure-Python code but not code
blocked in native calls (reported as such).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import importlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from py_code_mode._private.installed import missing_from
from py_code_mode._private.run_output import OutputListener, current_listener
from py_code_mode._private.uv import run_uv
from py_code_mode.errors import ExecutorError, SessionClosedError, error_payload
from py_code_mode.execution._configured import ConfiguredExecutor
from py_code_mode.execution._isolated.client import elapsed_ms
from py_code_mode.execution.in_process.config import InProcessConfig
from py_code_mode.result import ExecutionResult
from py_code_mode.worker.errors import RunInterrupted, error_from_payload
from py_code_mode.worker.runtime import RunOutcome, WorkerRuntime

if TYPE_CHECKING:
    from py_code_mode.execution.protocol import Host

__all__ = ["InProcessConfig", "InProcessExecutor"]

logger = logging.getLogger(__name__)

_RELAY_INTERVAL = 0.2
"""Seconds between looks at a running run's output when someone listens."""

_LIBRARY_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_HOST_WAIT_SLICE = 0.1


class _LoopChannel:
    """Host channel for a worker thread: schedules host calls on the session's loop."""

    def __init__(self, host: Host, loop: asyncio.AbstractEventLoop) -> None:
        self._host = host
        self._loop = loop

    def call(self, method: str, params: dict[str, Any]) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise ExecutorError("host calls must not be made from the session's event loop")
        future = asyncio.run_coroutine_threadsafe(self._host.dispatch(method, params), self._loop)
        try:
            while True:
                try:
                    return future.result(_HOST_WAIT_SLICE)
                except concurrent.futures.TimeoutError:
                    continue  # wait in slices so a timeout interrupt can land
        except BaseException as exc:
            if not future.done():
                future.cancel()
                raise
            if isinstance(exc, Exception) and future.exception() is exc:
                raise error_from_payload(error_payload(exc)) from None
            raise


@dataclass(slots=True)
class _Job:
    code: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[RunOutcome]
    delivered: bool = False

    def deliver(self, outcome: RunOutcome) -> None:
        if self.delivered:
            return
        self.delivered = True
        # An abandoned run may finish after its session's event loop has closed.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_set_result, self.future, outcome)


def _set_result(future: asyncio.Future[RunOutcome], outcome: RunOutcome) -> None:
    if not future.done():
        future.set_result(outcome)


class _Runner:
    """A long-lived thread that runs jobs one at a time."""

    def __init__(self, runtime: WorkerRuntime) -> None:
        self._runtime = runtime
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.current: _Job | None = None
        self._thread = threading.Thread(target=self._serve, name="py-code-mode-run", daemon=True)
        self._thread.start()

    def submit(self, job: _Job) -> None:
        self._queue.put(job)

    def interrupt(self) -> None:
        ident = self._thread.ident
        if ident is None or self.current is None:
            return
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(ident), ctypes.py_object(RunInterrupted)
        )

    def stop(self) -> None:
        self._queue.put(None)

    def _serve(self) -> None:
        job: _Job | None = None
        while True:
            try:
                job = self._queue.get()
                if job is None:
                    return
                self.current = job
                outcome = self._runtime.run(job.code)
                self.current = None
                job.deliver(outcome)
            except RunInterrupted:
                # The interrupt landed outside agent code (between jobs or while delivering).
                self.current = None
                if job is not None:
                    job.deliver(RunOutcome(error="run interrupted", error_type="RunInterrupted"))


class InProcessExecutor(ConfiguredExecutor[InProcessConfig]):
    """Runs agent code in the host process, on a dedicated thread.

    Args:
        config: Settings; defaults when omitted.
    """

    def __init__(self, config: InProcessConfig | None = None) -> None:
        super().__init__(config, InProcessConfig)
        self._runtime: WorkerRuntime | None = None
        self._runner: _Runner | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    # -- Executor protocol -----------------------------------------------------------
    async def start(self, host: Host) -> None:
        """Create the runtime and make sure configured and stored deps are installed."""
        if self._closed:
            raise SessionClosedError("this executor was closed; create a new one")
        if self._runtime is not None:
            return
        channel = _LoopChannel(host, asyncio.get_running_loop())
        self._runtime = WorkerRuntime(
            channel,
            output_limit=self.config.output_limit,
            extra_internal_dirs=(_LIBRARY_DIR,),
        )
        wanted = list(dict.fromkeys([*self.configured_deps, *await host.storage.list_deps()]))
        missing = (
            await asyncio.to_thread(missing_from, wanted, [Path(p) for p in sys.path if p])
            if wanted
            else []
        )
        if missing:
            logger.info("installing %d missing package(s): %s", len(missing), ", ".join(missing))
            await self.install(missing)

    async def run(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Run code on the runner thread, interrupting it past ``timeout`` seconds."""
        if self._runtime is None:
            raise SessionClosedError("executor is not started")
        if timeout is None:
            timeout = self.config.timeout
        async with self._lock:
            return await self._run_locked(code, timeout)

    async def reset(self) -> None:
        """Forget the agent's variables."""
        if self._runtime is not None:
            async with self._lock:
                self._runtime.reset()

    async def close(self) -> None:
        """Stop the runner thread. Idempotent."""
        self._closed = True
        if self._runner is not None:
            self._runner.stop()
            self._runner = None
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    # -- PackageEnvironment ----------------------------------------------------------
    async def install(self, specs: Sequence[str]) -> str:
        """Install into the running interpreter's environment with ``uv pip``."""
        output = await run_uv(
            ["pip", "install", "--python", sys.executable, *specs], what="uv pip install"
        )
        importlib.invalidate_caches()
        return output

    async def uninstall(self, names: Sequence[str]) -> str:
        """Uninstall from the running interpreter's environment with ``uv pip``."""
        return await run_uv(
            ["pip", "uninstall", "--python", sys.executable, *names], what="uv pip uninstall"
        )

    # -- internals -------------------------------------------------------------------
    async def _run_locked(self, code: str, timeout: float | None) -> ExecutionResult:
        assert self._runtime is not None
        if self._runner is None:
            self._runner = _Runner(self._runtime)
        runner = self._runner
        loop = asyncio.get_running_loop()
        job = _Job(code, loop, loop.create_future())
        started = time.perf_counter()
        runner.submit(job)
        listener = current_listener()
        relay = (
            None
            if listener is None
            else asyncio.create_task(_relay_output(self._runtime, job.future, listener))
        )
        try:
            outcome = await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except TimeoutError:
            return await self._interrupt(runner, job, timeout or 0.0, started)
        finally:
            if relay is not None:
                relay.cancel()
        return ExecutionResult(
            value=outcome.value,
            stdout=outcome.stdout,
            stderr=outcome.stderr,
            metadata={"images": outcome.images} if outcome.images else {},
            error=outcome.error,
            error_type=outcome.error_type,
            execution_time_ms=elapsed_ms(started),
        )

    async def _interrupt(
        self, runner: _Runner, job: _Job, timeout: float, started: float
    ) -> ExecutionResult:
        runner.interrupt()
        try:
            outcome = await asyncio.wait_for(
                asyncio.shield(job.future), self.config.interrupt_grace
            )
        except TimeoutError:
            # Blocked in native code: abandon the thread; the next run gets a new one.
            runner.stop()
            self._runner = None
            assert self._runtime is not None
            self._runtime.detach_loop()
            return ExecutionResult.failure(
                f"TimeoutError: the run exceeded its {timeout:g} s timeout and could not be "
                "interrupted (it is blocked in native code such as time.sleep or I/O). It keeps "
                "running in a background thread of the host process; variables are kept but "
                "that code may still change them.",
                "TimeoutError",
                execution_time_ms=elapsed_ms(started),
            )
        return ExecutionResult.failure(
            f"TimeoutError: the run exceeded its {timeout:g} s timeout and was interrupted; "
            "variables are kept.",
            "TimeoutError",
            stdout=outcome.stdout,
            execution_time_ms=elapsed_ms(started),
        )


async def _relay_output(
    runtime: WorkerRuntime, done: asyncio.Future[Any], listener: OutputListener
) -> None:
    """Hand the active run's new output to ``listener`` while the run goes."""
    seen: tuple[int, int] = (0, 0)
    while not done.done():
        await asyncio.sleep(_RELAY_INTERVAL)
        buffer = runtime.current_output
        if buffer is None:
            continue
        index = seen[1] if seen[0] == id(buffer) else 0
        text, index = buffer.read_from(index)
        seen = (id(buffer), index)
        if text:
            listener(text)
