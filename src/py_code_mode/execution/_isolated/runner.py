"""The executor half of running the worker out of process (subprocess, container).

:class:`WorkerRunner` owns an executor's lifecycle around one
:class:`~py_code_mode.execution._isolated.client.WorkerConnection`: start, runs with
their timeout (interrupt, then kill and replace the worker), crash reporting, reset
and close, worded the same way whichever way the worker is started. Executors say
how to get ready (:meth:`WorkerRunner._prepare`), how to start one worker
(:meth:`WorkerRunner._spawn`) and what to free at the end
(:meth:`WorkerRunner._cleanup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from py_code_mode._private.run_output import current_listener
from py_code_mode.errors import ConfigError, ExecutorError, SessionClosedError
from py_code_mode.execution._configured import ConfiguredExecutor, ExecutorConfig
from py_code_mode.execution._isolated.client import (
    WorkerConnection,
    WorkerDiedError,
    closed_result,
    elapsed_ms,
    max_frame_for,
    outcome_result,
    with_notice,
)
from py_code_mode.result import ExecutionResult
from py_code_mode.worker import wire

if TYPE_CHECKING:
    from py_code_mode.execution.protocol import Host

__all__ = ["WorkerRunner"]

RESET_TIMEOUT = 10.0


ConfigT = TypeVar("ConfigT", bound=ExecutorConfig)
HandleT = TypeVar("HandleT", bound=WorkerConnection)


class WorkerRunner(ConfiguredExecutor[ConfigT], Generic[ConfigT, HandleT]):
    """Lifecycle, runs, timeouts, crashes and resets of an out-of-process worker.

    Runs and resets are serialised by the executor's run lock; installs by
    ``_install_lock``.

    Args:
        config: The caller's config, or None for the defaults.
        config_type: The config class the executor takes.
    """

    def __init__(self, config: ConfigT | None, config_type: type[ConfigT]) -> None:
        super().__init__(config, config_type)
        self._host: Host | None = None
        self._handle: HandleT | None = None
        self._lock = asyncio.Lock()
        self._install_lock = asyncio.Lock()
        self._ids: Iterator[int] = itertools.count(1)
        self._started = False
        self._closed = False
        self._max_frame = max_frame_for(self.config.output_limit)

    # -- executor hooks ----------------------------------------------------------------
    async def _prepare(self, host: Host) -> None:
        """Get everything ready to spawn workers (environment, engine); once, at start."""

    async def _spawn(self) -> HandleT:
        """Start one worker and return its connection once it is ready."""
        raise NotImplementedError

    async def _after_spawn(self, host: Host) -> None:
        """Finish starting with the first worker running (a failure stops it)."""

    async def _cleanup(self) -> None:
        """Free what :meth:`_prepare` made; after a failed start and at close."""

    # -- Executor protocol -------------------------------------------------------------
    async def start(self, host: Host) -> None:
        """Prepare the worker's environment and start the worker.

        Raises:
            SessionClosedError: The executor was closed.
            ConfigError: The settings cannot work here (an interpreter or image that
                is not there, settings the engine refuses).
            DependencyError: Required packages could not be installed.
            ExecutorError: The worker did not start.
        """
        if self._closed:
            raise SessionClosedError("this executor was closed; create a new one")
        async with self._lock:
            if self._started or self._closed:
                return
            self._host = host
            try:
                await self._prepare(host)
                self._handle = await self._spawn()
                await self._after_spawn(host)
            except BaseException:
                handle, self._handle = self._handle, None
                if handle is not None:
                    await handle.kill("was stopped because the session could not start")
                await self._cleanup()
                raise
            self._started = True

    async def run(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Run code in the worker; interrupt it (then replace the worker) past ``timeout``."""
        if not self._started or self._host is None:
            raise SessionClosedError("executor is not started")
        if timeout is None:
            timeout = self.config.timeout
        async with self._lock:
            if self._closed:
                return closed_result()
            return await self._run_locked(code, timeout)

    async def reset(self) -> None:
        """Forget the agent's variables (a fresh worker if the current one is gone)."""
        if not self._started:
            return
        async with self._lock:
            if not self._closed:
                await self._reset_locked()

    async def close(self) -> None:
        """Stop the worker (and everything it started) and free its resources. Idempotent."""
        if self._closed:
            return
        self._closed = True
        handle, self._handle = self._handle, None
        if handle is not None:
            await handle.stop()
        await self._cleanup()

    # -- runs --------------------------------------------------------------------------
    async def _restart(self) -> HandleT:
        """Replace the worker (killing the old one if it still runs)."""
        old = self._handle
        self._handle = None
        if old is not None:
            await old.kill(old.cause or "was replaced")
        self._handle = await self._spawn()
        return self._handle

    async def _run_locked(self, code: str, timeout: float | None) -> ExecutionResult:
        started = time.perf_counter()
        notice = ""
        handle = self._handle
        if handle is None or not handle.check_alive():
            if handle is not None and not handle.death_reported:
                notice = (
                    f"[py-code-mode] The {handle.noun} {handle.cause} after the previous run; "
                    "a fresh worker was started and all variables from earlier runs were lost.\n"
                )
            try:
                handle = await self._restart()
            except (ExecutorError, ConfigError) as exc:
                return ExecutionResult.failure(
                    f"ExecutorError: {exc}",
                    "ExecutorError",
                    execution_time_ms=elapsed_ms(started),
                    variables_lost=True,
                )
        run_id = next(self._ids)
        reply = handle.expect(run_id)
        handle.outputs[run_id] = []
        listener = current_listener()
        if listener is not None:
            handle.listeners[run_id] = listener
        try:
            await handle.send({"kind": "run", "id": run_id, "code": code})
            if timeout is None:
                message = await reply
            else:
                done, _ = await asyncio.wait((reply,), timeout=timeout)
                if not done:
                    return await self._interrupt(handle, run_id, reply, timeout, started)
                message = reply.result()
        except WorkerDiedError as exc:
            return self._died(handle, run_id, exc.cause, started)
        except asyncio.CancelledError:
            # The caller gave up waiting; stop the code rather than let it run on. If it
            # ignores the interrupt, the next run's timeout deals with it.
            handle.send_nowait({"kind": "interrupt", "id": run_id})
            raise
        except wire.WireError as exc:  # the code itself cannot be encoded (lone surrogates)
            return ExecutionResult.failure(
                f"ValueError: the code cannot be sent to the worker: {exc}",
                "ValueError",
                execution_time_ms=elapsed_ms(started),
            )
        finally:
            handle.forget(run_id)
        result = outcome_result(message.get("outcome"), started)
        if notice:
            return with_notice(result, notice)
        return result

    async def _interrupt(
        self,
        handle: HandleT,
        run_id: int,
        reply: asyncio.Future[dict[str, Any]],
        timeout: float,
        started: float,
    ) -> ExecutionResult:
        grace = self.config.interrupt_grace
        with contextlib.suppress(WorkerDiedError):
            await handle.send({"kind": "interrupt", "id": run_id})
        done, _ = await asyncio.wait((reply,), timeout=grace)
        if done:
            exc = reply.exception()
            if isinstance(exc, WorkerDiedError):
                return self._died(handle, run_id, exc.cause, started)
            outcome = reply.result().get("outcome") or {}
            if outcome.get("error_type") != "KeyboardInterrupt":
                return outcome_result(outcome, started)  # it finished just as time ran out
            return ExecutionResult.failure(
                f"TimeoutError: the run exceeded its {timeout:g} s timeout and was interrupted; "
                "variables are kept.",
                "TimeoutError",
                stdout=str(outcome.get("stdout") or ""),
                execution_time_ms=elapsed_ms(started),
            )
        partial = "".join(handle.outputs.get(run_id, ()))
        await handle.kill("was killed after a run exceeded its timeout")
        if reply.done() and not reply.cancelled():
            reply.exception()  # failed by the kill; nobody else awaits it
        handle.death_reported = True
        return ExecutionResult.failure(
            f"TimeoutError: the run exceeded its {timeout:g} s timeout and did not stop within "
            f"{grace:g} s of being interrupted, so the {handle.noun} was killed; all variables "
            "were lost. The next run starts a fresh worker.",
            "TimeoutError",
            stdout=partial,
            execution_time_ms=elapsed_ms(started),
            variables_lost=True,
        )

    def _died(self, handle: HandleT, run_id: int, cause: str, started: float) -> ExecutionResult:
        handle.death_reported = True
        if self._closed:
            return closed_result()
        partial = "".join(handle.outputs.get(run_id, ()))
        return ExecutionResult.failure(
            f"{handle.death_type}: the {handle.noun} {cause} during the run; all variables were "
            "lost. The next run starts a fresh worker.",
            handle.death_type,
            stdout=partial,
            execution_time_ms=elapsed_ms(started),
            variables_lost=True,
        )

    async def _reset_locked(self) -> None:
        handle = self._handle
        if handle is None or not handle.check_alive():
            await self._restart()
            return
        request_id = next(self._ids)
        reply = handle.expect(request_id)
        try:
            await handle.send({"kind": "reset", "id": request_id})
            await asyncio.wait_for(reply, RESET_TIMEOUT)
        except (WorkerDiedError, TimeoutError):
            await handle.kill("did not reset in time and was killed")
            await self._restart()
        finally:
            handle.forget(request_id)
