"""Host side of the worker protocol, shared by the subprocess and container executors.

:class:`WorkerConnection` speaks :mod:`py_code_mode.worker.wire` with one worker over
an asyncio stream pair (a socket pair for a child process, a container's attached
stdio or a TCP socket for a container): it sends runs, collects output, serves the
worker's namespace calls from :class:`Host` and notices when the worker is
gone. Subclasses say how the worker is stopped and report its exit status.

The executor half (runs, timeouts, restarts) is
:mod:`py_code_mode.execution._isolated.runner`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from typing import TYPE_CHECKING, Any

from py_code_mode._private.run_output import OutputListener
from py_code_mode._private.worker_frames import LogLimiter, check_worker_frame
from py_code_mode.errors import ExecutorError, error_payload
from py_code_mode.result import ExecutionResult
from py_code_mode.worker import wire
from py_code_mode.worker.errors import namespace_error_type

if TYPE_CHECKING:
    from py_code_mode.execution.protocol import Host

__all__ = [
    "WorkerConnection",
    "WorkerDiedError",
    "check_hello",
    "closed_result",
    "describe_exit",
    "elapsed_ms",
    "max_frame_for",
    "outcome_result",
    "start_failure",
    "with_notice",
]

logger = logging.getLogger(__name__)

STOP_GRACE = 1.0
REAP_TIMEOUT = 5.0
MAX_RPC_IN_FLIGHT = 64
MAX_RPC_QUEUED = 1024
"""Namespace calls a worker may have waiting; a flood beyond that is a protocol error."""
STDERR_TAIL = 4000
"""Bytes of a worker's own diagnostics (its stderr) kept for error messages."""


class WorkerDiedError(Exception):
    """The worker went away while something waited for it."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def describe_exit(returncode: int) -> str:
    """Why a worker process ended, from its exit status (negative: killed by a signal)."""
    if returncode >= 0:
        return f"exited with code {returncode} (os._exit(), a fatal error, or sys.exit in a thread)"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    reasons = {
        "SIGKILL": "killed by SIGKILL (from another process, or by the kernel when memory ran out)",
        "SIGSEGV": "crashed with SIGSEGV (a fault in native code)",
        "SIGBUS": "crashed with SIGBUS (a fault in native code)",
        "SIGABRT": "aborted (SIGABRT, usually a fatal error in native code)",
        "SIGTERM": "terminated by SIGTERM",
        "SIGXCPU": "killed for exceeding its CPU time limit (SIGXCPU)",
    }
    return reasons.get(name, f"killed by {name}")


def check_hello(hello: dict[str, Any]) -> None:
    """Refuse a worker that speaks another protocol version.

    Raises:
        ExecutorError: The versions differ.
    """
    if hello.get("version") != wire.PROTOCOL_VERSION:
        raise ExecutorError(
            f"the worker speaks protocol version {hello.get('version')!r}, "
            f"expected {wire.PROTOCOL_VERSION}"
        )


def max_frame_for(output_limit: int) -> int:
    """The largest frame either way for a worker keeping ``output_limit`` characters.

    A result carries up to ``output_limit`` characters of output, each up to 4 bytes
    of UTF-8 and escaped in JSON; the rest is room for the value and the envelope.
    """
    return max(wire.DEFAULT_MAX_FRAME, 8 * output_limit + (1 << 20))


def start_failure(exc: BaseException, worker: str, timeout: float, detail: str) -> ExecutorError:
    """The error of a worker that did not get ready; ``worker`` names it with its runtime."""
    reason = f"did not answer within {timeout:g} s" if isinstance(exc, TimeoutError) else str(exc)
    return ExecutorError(
        f"the {worker} could not start: {reason}" + (f"\n{detail}" if detail else "")
    )


def closed_result() -> ExecutionResult:
    """The result of a run that the closing of its session cut short."""
    return ExecutionResult.failure(
        "SessionClosedError: the session was closed while the run was in progress.",
        "SessionClosedError",
        variables_lost=True,
    )


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` value)."""
    return (time.perf_counter() - started) * 1000.0


_MAX_IMAGES = 8


def outcome_result(outcome: Any, started: float) -> ExecutionResult:
    """An :class:`ExecutionResult` from the ``outcome`` of a worker's ``result`` message."""
    if not isinstance(outcome, dict):
        return ExecutionResult.failure(
            "ExecutorError: the worker sent a malformed result",
            "ExecutorError",
            execution_time_ms=elapsed_ms(started),
        )
    error = outcome.get("error")
    error_type = outcome.get("error_type")
    return ExecutionResult(
        value=outcome.get("value"),
        stdout=str(outcome.get("stdout") or ""),
        error=None if error is None else str(error),
        error_type=None if error_type is None else str(error_type),
        execution_time_ms=elapsed_ms(started),
        stderr=str(outcome.get("stderr") or ""),
        metadata=_outcome_metadata(outcome),
    )


def _outcome_metadata(outcome: dict[str, Any]) -> dict[str, Any]:
    images = outcome.get("images")
    if isinstance(images, list) and images and all(isinstance(i, str) for i in images):
        # Names come from the worker (agent code); the host only ever reads them as
        # artifact names, and a handful is all a reply shows.
        return {"images": images[:_MAX_IMAGES]}
    return {}


def with_notice(result: ExecutionResult, notice: str) -> ExecutionResult:
    """``result`` with ``notice`` in front of its output, marked as having lost variables."""
    return ExecutionResult(
        value=result.value,
        stdout=notice + result.stdout,
        stderr=result.stderr,
        error=result.error,
        error_type=result.error_type,
        execution_time_ms=result.execution_time_ms,
        variables_lost=True,
        metadata={**result.metadata, "worker_restarted": True},
    )


def replaced_after_timeout(result: ExecutionResult, why: str, what: str) -> ExecutionResult:
    """A timed-out ``result`` whose leftover threads or processes made ``what`` be replaced."""
    return dataclasses.replace(
        result,
        error=(result.error or "").replace("variables are kept.", "")
        + f"{why}, so the {what} was replaced to end them; all variables were lost. "
        f"The next run starts a fresh {what}.",
        variables_lost=True,
    )


def namespace_payload(method: str, message: str) -> dict[str, Any]:
    """An error payload of the namespace ``method`` belongs to."""
    return {"type": namespace_error_type(method), "message": message}


# -- one worker ------------------------------------------------------------------------
_logged_warnings: set[str] = set()


def _warn_once(warning: str, label: str) -> None:
    """Log a worker's setup warning once per host process, not once per worker."""
    if warning in _logged_warnings:
        logger.debug("worker %s: %s", label, warning)
        return
    _logged_warnings.add(warning)
    logger.warning("worker %s: %s", label, warning)


class WorkerConnection:
    """A running worker as seen from the host: its connection and protocol state.

    Subclasses implement :meth:`_terminate` (end the worker now, without waiting) and
    call :meth:`_exited` once the worker's exit status is known; :meth:`_release`
    frees whatever else they hold, and :attr:`stderr_tail` reports the worker's own
    diagnostics from wherever they collect them.

    Args:
        reader: Stream of the worker's frames.
        writer: Stream to the worker.
        host: Where namespace calls from agent code go.
        label: Names the worker in logs (a pid, a container id).
        max_frame: Largest frame either way.
        output_limit: Characters of output the worker keeps per run; streamed output
            kept here for a killed run is capped at twice that.
    """

    noun = "worker process"
    """How results and logs name the worker ("The worker process was killed ...")."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: Host,
        *,
        label: str,
        max_frame: int,
        output_limit: int,
    ) -> None:
        self.label = label
        self._reader = reader
        self._writer = writer
        self._host = host
        self._max_frame = max_frame
        self._output_limit = output_limit
        self._output_cap = 2 * output_limit
        self._loop = asyncio.get_running_loop()
        self._replies: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.outputs: dict[Any, list[str]] = {}
        self.listeners: dict[Any, OutputListener] = {}
        self._output_sizes: dict[Any, int] = {}
        self._rpc_tasks: set[asyncio.Task[None]] = set()
        self._rpc_slots = asyncio.Semaphore(MAX_RPC_IN_FLIGHT)
        self.hello: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self.ready: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self.dead = asyncio.Event()
        self.cause = ""
        self.death_reported = False
        self.death_type = "WorkerDied"
        """``error_type`` of a run this worker's death cut short ("ProtocolError": bad frame)."""
        self._log_limiter = LogLimiter()
        self._planned_cause = ""
        self.exited: asyncio.Future[int] = self._loop.create_future()
        self._reader_task = asyncio.create_task(
            self._read_loop(), name=f"py-code-mode-worker-{label}"
        )

    # -- subclass hooks ----------------------------------------------------------------
    def _terminate(self) -> None:
        """End the worker (and everything it started) now; must not block."""
        raise NotImplementedError

    def _release(self) -> None:
        """Free resources other than the connection once the worker is gone."""

    @property
    def stderr_tail(self) -> str:
        """The end of the worker's own diagnostics (never agent output)."""
        return ""

    def describe_exit(self, returncode: int) -> str:
        """Why the worker ended, for results and logs."""
        return describe_exit(returncode)

    def check_alive(self) -> bool:
        """Notice an exit the event loop has not processed yet; True if still running."""
        return not self.dead.is_set()

    # -- starting ----------------------------------------------------------------------
    async def configure(
        self,
        *,
        limits: dict[str, Any],
        site_dirs: list[str],
        sys_path: list[str],
        hello: dict[str, Any] | None = None,
    ) -> None:
        """Check the worker's hello, send it its settings and wait until it is ready.

        Args:
            limits: Resource limits the worker applies to itself.
            site_dirs: Package directories in front of its ``sys.path``.
            sys_path: Directories agent code imports from (its working directory).
            hello: The hello already read by whoever started the worker, if any.

        Raises:
            ExecutorError: The worker speaks another protocol version.
            WorkerDiedError: The worker ended meanwhile.
        """
        check_hello(hello if hello is not None else await self.hello)
        await self.send(
            {
                "kind": "configure",
                "output_limit": self._output_limit,
                "max_frame": self._max_frame,
                "limits": limits,
                "site_dirs": site_dirs,
                "sys_path": sys_path,
            }
        )
        ready = await self.ready
        for warning in ready.get("warnings") or ():
            _warn_once(str(warning), self.label)

    # -- sending -----------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        """Write one message.

        Raises:
            WorkerDiedError: The worker is gone.
        """
        await self.send_frame(wire.encode_message(message, self._max_frame))

    async def send_frame(self, frame: bytes) -> None:
        """Write one encoded frame (see :meth:`send`)."""
        if self.dead.is_set():
            raise WorkerDiedError(self.cause)
        try:
            # write() queues the whole frame at once, so frames never interleave.
            self._writer.write(frame)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise WorkerDiedError(self.cause or f"closed its connection ({exc})") from None

    def send_nowait(self, message: dict[str, Any]) -> None:
        """Queue one message without waiting (usable while being cancelled)."""
        if not self.dead.is_set():
            with contextlib.suppress(wire.WireError, ConnectionError, OSError):
                self._writer.write(wire.encode_message(message, self._max_frame))

    def expect(self, request_id: Any) -> asyncio.Future[dict[str, Any]]:
        """A future for the reply (``result`` or ``reset_done``) to ``request_id``."""
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        if self.dead.is_set():
            future.set_exception(WorkerDiedError(self.cause))
        else:
            self._replies[request_id] = future
        return future

    def forget(self, request_id: Any) -> None:
        """Drop what was kept for ``request_id``."""
        self._replies.pop(request_id, None)
        self.outputs.pop(request_id, None)
        self.listeners.pop(request_id, None)
        self._output_sizes.pop(request_id, None)

    # -- receiving ---------------------------------------------------------------------
    async def _read_loop(self) -> None:
        try:
            while True:
                message = await wire.read_message_async(self._reader, self._max_frame)
                if message is None:
                    break
                self._handle(check_worker_frame(message))
        except asyncio.CancelledError:
            raise
        except (ConnectionError, OSError, wire.ConnectionClosedError):
            pass
        except Exception as exc:  # noqa: BLE001 - whatever a frame does, this task must not die
            self.death_type = "ProtocolError"
            await self.kill(f"broke the protocol ({exc}) and was killed")
            return
        # End of stream: the worker closed its side; its exit status tells why.
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), 2.0)
        except TimeoutError:
            await self.kill("closed its connection and was killed")

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["kind"]
        if kind == "rpc":
            if len(self._rpc_tasks) >= MAX_RPC_QUEUED:
                raise wire.ProtocolError(
                    f"more than {MAX_RPC_QUEUED} namespace calls waiting at once"
                )
            task = asyncio.create_task(self._serve_rpc(message))
            self._rpc_tasks.add(task)
            task.add_done_callback(self._rpc_tasks.discard)
        elif kind in ("result", "reset_done"):
            future = self._replies.pop(message.get("id"), None)
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == "output":
            self._collect_output(message)
        elif kind == "hello":
            if not self.hello.done():
                self.hello.set_result(message)
        elif kind == "ready":
            if not self.ready.done():
                self.ready.set_result(message)
        elif kind == "log":
            level = message["level"]
            text = self._log_limiter.admit(message["message"])
            if text is None:
                return
            if level == "fatal":
                self._planned_cause = self._planned_cause or f"failed: {text}"
            # No once-per-process dedupe here: agent code can forge log frames, and a
            # remembered text would silence the real warning later.  Start-up warnings
            # arrive in ``ready`` and are deduped by _warn_once before agent code runs.
            logger.log(
                logging.ERROR if level == "fatal" else logging.WARNING,
                "worker %s: %s",
                self.label,
                text,
            )
        else:
            raise wire.ProtocolError(f"unexpected {kind!r} message from the worker")

    def _collect_output(self, message: dict[str, Any]) -> None:
        run_id = message.get("id")
        chunks = self.outputs.get(run_id)
        text = message.get("text")
        if chunks is None or not isinstance(text, str):
            return
        listener = self.listeners.get(run_id)
        if listener is not None:
            listener(text)
        size = self._output_sizes.get(run_id, 0)
        if size < self._output_cap:
            chunks.append(text[: self._output_cap - size])
            self._output_sizes[run_id] = size + len(text)

    async def _serve_rpc(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        method = message.get("method")
        params = message.get("params")
        async with self._rpc_slots:
            try:
                value = await self._dispatch(method, params)
                frame = wire.encode_message(
                    {"kind": "rpc_result", "id": request_id, "ok": True, "value": value},
                    self._max_frame,
                )
            except asyncio.CancelledError:
                raise
            except wire.FrameTooLargeError as exc:
                frame = self._rpc_error(
                    request_id,
                    namespace_payload(
                        str(method), f"the result of {method}() is too large to return: {exc}"
                    ),
                )
            except wire.UnsupportedValueError as exc:
                frame = self._rpc_error(
                    request_id,
                    namespace_payload(str(method), f"{method}() returned unsendable data: {exc}"),
                )
            except Exception as exc:  # noqa: BLE001 - every failure goes back to agent code
                frame = self._rpc_error(request_id, error_payload(exc))
            with contextlib.suppress(WorkerDiedError):
                await self.send_frame(frame)

    async def _dispatch(self, method: Any, params: Any) -> Any:
        if not isinstance(method, str) or not isinstance(params, dict):
            raise ExecutorError("malformed namespace call from the worker")
        return await self._host.dispatch(method, params)

    def _rpc_error(self, request_id: Any, payload: dict[str, Any]) -> bytes:
        return wire.encode_message(
            {"kind": "rpc_result", "id": request_id, "ok": False, "error": payload},
            self._max_frame,
        )

    # -- stopping ----------------------------------------------------------------------
    def _exited(self, returncode: int) -> None:
        """Record the worker's exit status (call on the event loop)."""
        if not self.exited.done():
            self.exited.set_result(returncode)
        self._mark_dead(self._planned_cause or self.describe_exit(returncode))

    def _mark_dead(self, cause: str) -> None:
        if self.dead.is_set():
            return
        self.cause = cause
        self.dead.set()
        self._terminate()
        for future in self._replies.values():
            if not future.done():
                future.set_exception(WorkerDiedError(cause))
        self._replies.clear()
        for task in list(self._rpc_tasks):
            task.cancel()
        for future in (self.hello, self.ready):
            if not future.done():
                future.set_exception(WorkerDiedError(cause))
                future.exception()  # mark retrieved: nobody may be waiting any more
        self._writer.close()

    async def kill(self, cause: str) -> None:
        """End the worker and wait until its exit is confirmed."""
        self._planned_cause = self._planned_cause or cause
        self._terminate()
        await self._reap()

    async def stop(self) -> None:
        """Ask the worker to exit, then make sure it (and all it started) is gone."""
        if not self.dead.is_set():
            self._planned_cause = "was stopped because the session closed"
            with contextlib.suppress(WorkerDiedError, wire.WireError):
                await self.send({"kind": "shutdown"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), STOP_GRACE)
        await self.kill("was stopped because the session closed")

    async def _reap(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), REAP_TIMEOUT)
        except TimeoutError:
            logger.warning("worker %s did not exit after being killed", self.label)
        self._mark_dead(self._planned_cause or "was killed")
        self._release()
        task = self._reader_task
        if task is not asyncio.current_task() and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
