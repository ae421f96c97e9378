"""The worker process: one :class:`WorkerRuntime` served over the wire protocol.

Started by the subprocess executor (and, unchanged, by the container executor) as
``python -m <package> --fd N`` (an inherited socket), ``--stdio`` (the protocol on
stdin/stdout) or ``--connect HOST:PORT`` (a TCP socket). It needs nothing but the
standard library, so it runs under any ``python3`` >= 3.11 without py_code_mode.

Process layout:

* The protocol never uses fds 0, 1 and 2. Fd 0 becomes ``/dev/null``; fds 1 and 2
  become the write end of a pipe drained into the running cell's output, so
  ``print``, ``os.write(1, ...)``, C extensions and child processes can never write
  into the protocol stream.
* Agent code runs in the main thread, so ``SIGINT`` (raised by a reader thread when
  the host sends ``interrupt``) becomes ``KeyboardInterrupt`` inside it. Frames the
  main thread writes are protected: an interrupt that arrives mid-write is delivered
  right after the frame is complete.
* A reader thread serves the protocol; a drain thread moves captured output into
  the run and streams it to the host; a forked watchdog kills the process group
  (this process and every child it started) as soon as the host's end of the
  connection goes away, even if the main thread is stuck in native code.
"""

from __future__ import annotations

import array
import atexit
import codecs
import contextlib
import functools
import itertools
import os
import queue
import select
import signal
import site
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO, NoReturn

from . import egress, wire
from .capture import OutputBuffer
from .errors import error_from_payload, namespace_error_type
from .runtime import DEFAULT_OUTPUT_LIMIT, RunOutcome, WorkerRuntime

__all__ = ["apply_limits", "main"]

_STREAM_INTERVAL = 0.25
"""Seconds between output chunks streamed to the host during a run."""
_READ_CHUNK = 65536
_PIPE_SIZE = 1 << 20


# -- transport ---------------------------------------------------------------------------
class _Transport:
    """A bidirectional byte stream: something to read frames from and write them to."""

    def __init__(self, rfile: BinaryIO, wfile: BinaryIO, poll_fd: int) -> None:
        self.rfile = rfile
        self.wfile = wfile
        self.poll_fd = poll_fd


def _socket_transport(sock: socket.socket) -> _Transport:
    sock.set_inheritable(False)
    rfile: BinaryIO = sock.makefile("rb")
    wfile: BinaryIO = sock.makefile("wb", buffering=0)  # type: ignore[assignment]
    return _Transport(rfile, wfile, sock.fileno())


def _open_transport(argv: list[str]) -> _Transport:
    if len(argv) == 2 and argv[0] == "--fd":
        fd = int(argv[1])
        return _socket_transport(socket.socket(fileno=fd))
    if len(argv) == 1 and argv[0] == "--stdio":
        # Private duplicates: fds 0 and 1 are about to be redirected.
        in_fd, out_fd = os.dup(0), os.dup(1)
        rfile: BinaryIO = open(in_fd, "rb")  # noqa: SIM115 - lives as long as the process
        wfile: BinaryIO = open(out_fd, "wb", buffering=0)  # noqa: SIM115
        return _Transport(rfile, wfile, in_fd)
    if len(argv) == 2 and argv[0] == "--connect":
        host, _, port = argv[1].rpartition(":")
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
        sock.settimeout(None)
        return _socket_transport(sock)
    raise SystemExit(
        "usage: python -m <worker package> (--fd N | --stdio | --connect HOST:PORT)\n"
        "The worker speaks the py-code-mode wire protocol; it is started by an executor."
    )


def _redirect_std_fds() -> int:
    """Point fd 0 at /dev/null and fds 1, 2 at a capture pipe; return its read end."""
    read_fd, write_fd = os.pipe()
    try:
        import fcntl  # POSIX only: on other platforms the pipe keeps its default size

        fcntl.fcntl(write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
    except (ImportError, OSError):
        pass  # a smaller pipe only means more wake-ups
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    # Fresh text streams: the old ones may have cached facts (seekable /dev/null) about
    # what the fds used to be.
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        if fd:
            stream = open(  # noqa: SIM115 - lives as long as the process
                fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
            )
        else:
            stream = open(fd, encoding="utf-8", closefd=False)  # noqa: SIM115
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    return read_fd


def _start_watchdog(poll_fd: int, close_fds: tuple[int, ...]) -> None:
    """Start a process that kills our process group once the host end closes.

    It covers the case the reader thread cannot: the main thread holding the GIL in
    native code when the host dies. Forked twice, so it is not our child (agent code
    calling ``os.wait()`` never sees it), and before any thread starts. It only
    polls for hang-up and never reads, so the protocol stream is untouched.
    """
    try:
        pid = os.fork()
    except OSError:
        return  # the reader thread still handles a vanished host
    if pid:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        return
    try:
        if os.fork():
            os._exit(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for fd in close_fds:
            os.close(fd)
        hangup = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)
        poller = select.poll()
        poller.register(poll_fd, hangup)
        while True:
            for _fd, events in poller.poll():
                if events & select.POLLNVAL:
                    os._exit(0)
                if events & hangup:
                    os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(0)


# -- limits ------------------------------------------------------------------------------
def _user_task_count(uid: int) -> int:
    """Processes and threads of ``uid``: what ``RLIMIT_NPROC`` counts."""
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as fh:
                owner, threads = -1, 1
                for line in fh:
                    if line.startswith("Uid:"):
                        owner = int(line.split()[1])
                    elif line.startswith("Threads:"):
                        threads = int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            continue
        if owner == uid:
            total += threads
    return total


def apply_limits(limits: dict[str, Any]) -> list[str]:
    """Apply resource limits to this process (inherited by its children).

    ``limits`` may hold ``memory_mb`` (address space), ``max_processes`` (processes
    and threads this worker may add to its user's current count), ``max_open_files``
    and ``max_file_size_mb``; ``None`` or absent means unchanged. Core dumps are
    always disabled. Returns warnings for limits that could not be applied as asked.
    """
    try:
        import resource  # POSIX only
    except ImportError:
        return ["resource limits are not supported on this platform"]
    warnings: list[str] = []

    def set_limit(label: str, which: int, value: int) -> None:
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY and value > hard:
            warnings.append(f"{label} lowered to the hard limit {hard} (asked for {value})")
            value = hard
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError) as exc:
            warnings.append(f"could not set {label}: {exc}")

    set_limit("core dump size", resource.RLIMIT_CORE, 0)
    memory_mb = limits.get("memory_mb")
    if memory_mb is not None:
        set_limit("memory limit", resource.RLIMIT_AS, int(memory_mb) * 1024 * 1024)
    open_files = limits.get("max_open_files")
    if open_files is not None:
        set_limit("open files limit", resource.RLIMIT_NOFILE, int(open_files))
    file_size_mb = limits.get("max_file_size_mb")
    if file_size_mb is not None:
        # Writes past the limit then fail with OSError instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        set_limit("file size limit", resource.RLIMIT_FSIZE, int(file_size_mb) * 1024 * 1024)
    processes = limits.get("max_processes")
    if processes is not None:
        if os.geteuid() == 0:
            warnings.append(
                "max_processes is not enforced: the kernel exempts root from RLIMIT_NPROC"
            )
        else:
            current = _user_task_count(os.getuid())
            set_limit("process limit", resource.RLIMIT_NPROC, current + int(processes))
    return warnings


# -- interrupt gate ----------------------------------------------------------------------
class _Gate:
    """Turns SIGINT into KeyboardInterrupt only while agent code runs.

    At most one KeyboardInterrupt per armed run; one that arrives while the main
    thread writes a frame is held back until the frame is complete.
    """

    def __init__(self) -> None:
        self.armed = False
        self.critical = 0
        self.deferred = False

    def handler(self, signum: int, frame: object) -> None:
        if not self.armed:
            return
        if self.critical:
            self.deferred = True
            return
        self.armed = False
        raise KeyboardInterrupt

    def leave_critical(self) -> None:
        self.critical -= 1
        if not self.critical and self.deferred:
            self.deferred = False
            if self.armed:
                self.armed = False
                raise KeyboardInterrupt


class _Waiter:
    """One pending RPC; ``wait`` can be interrupted by KeyboardInterrupt."""

    __slots__ = ("_lock", "done", "error", "ok", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.done = False
        self.ok = False
        self.value: Any = None
        self.error: dict[str, Any] = {}

    def wait(self) -> None:
        self._lock.acquire()

    def resolve(self, ok: bool, value: Any, error: Any) -> None:
        if self.done:
            return
        self.done = True
        self.ok = ok
        self.value = value
        self.error = error if isinstance(error, dict) else {"message": str(error)}
        self._lock.release()


# -- output capture ----------------------------------------------------------------------
class _Capture:
    """Drains the pipe behind fds 1 and 2 into the active run's output."""

    def __init__(self, fd: int, worker: Worker) -> None:
        self._fd = fd
        self._worker = worker
        os.set_blocking(fd, False)
        self.lock = threading.Lock()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            import fcntl  # POSIX only: elsewhere the usual pipe size is assumed

            self._capacity = int(fcntl.fcntl(fd, getattr(fcntl, "F_GETPIPE_SZ", 1032)))
        except (ImportError, OSError):
            self._capacity = 65536
        self.probe = _unread_probe(fd)

    def start(self) -> None:
        threading.Thread(target=self._loop, name="py-code-mode-output", daemon=True).start()

    def flush_into_run(self) -> None:
        """Move everything written to fds 1 and 2 so far into the active run's output."""
        with self.lock:
            self._drain(self._capacity + _READ_CHUNK)

    def buffer(self, limit: int) -> OutputBuffer:
        """A run's output buffer that takes in pending fd-level output before each write.

        So ``print('a'); os.system('echo b'); print('c')`` reads a, b, c even when
        the drain thread has not woken up yet.
        """
        return _OrderedBuffer(limit, self)

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        interval_ms = int(_STREAM_INTERVAL * 1000)
        while True:
            if poller.poll(interval_ms):
                with self.lock:
                    if self._drain(16 * _READ_CHUNK):
                        return
            self._worker.stream_output()

    def _drain(self, limit: int) -> bool:
        """Read up to ``limit`` bytes now; True at end of stream."""
        total = 0
        while total < limit:
            try:
                data = os.read(self._fd, _READ_CHUNK)
            except BlockingIOError:
                return False
            if not data:
                return True
            total += len(data)
            text = self._decoder.decode(data)
            buffer = self._worker.current_output()
            if text and buffer is not None:
                buffer.append(text)
        return False


def _unread_probe(fd: int) -> tuple[Callable[[], object], array.array[int]] | None:
    """A cheap "does the pipe hold unread bytes?" check: one ioctl, no exception.

    Returns a call that stores the pipe's unread byte count into the returned array,
    or None where ``FIONREAD`` is missing (then every write drains, which only costs
    a read).
    """
    try:
        import fcntl
        import termios

        count = array.array("i", [0])
        probe = functools.partial(fcntl.ioctl, fd, termios.FIONREAD, count, True)
        probe()
    except (ImportError, AttributeError, OSError):
        return None
    return probe, count


class _OrderedBuffer(OutputBuffer):
    __slots__ = ("_capture", "_count", "_drain_lock", "_probe")

    def __init__(self, limit: int, capture: _Capture) -> None:
        super().__init__(limit)
        self._capture = capture
        self._drain_lock = capture.lock
        probe = capture.probe
        self._probe: Callable[[], object] | None = None
        self._count: array.array[int] = array.array("i", [0])
        if probe is not None:
            self._probe, self._count = probe
        self.before_write = self._catch_up

    def _catch_up(self) -> None:
        # Runs before every write (twice per ``print``): probe first, then look at the
        # lock. An empty pipe with no drain in progress means no fd-level output
        # written so far is missing, so the drain (a lock and a read) is skipped.
        probe = self._probe
        if probe is None:
            self._capture.flush_into_run()
            return
        try:
            probe()
            unread = self._count[0]
        except OSError:
            unread = 1
        if unread or self._drain_lock.locked():
            self._capture.flush_into_run()


# -- the worker --------------------------------------------------------------------------
class Worker:
    """Serves one host connection; also the :class:`HostChannel` of its runtime."""

    def __init__(self, transport: _Transport, capture_fd: int) -> None:
        self._transport = transport
        self._max_frame = wire.DEFAULT_MAX_FRAME
        self._send_lock = threading.Lock()
        self._commands: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._pending: dict[int, _Waiter] = {}
        self._ids = itertools.count(1)
        self._gate = _Gate()
        self._main_ident = threading.get_ident()
        self._capture = _Capture(capture_fd, self)
        self._runtime: WorkerRuntime | None = None
        self._output_limit = DEFAULT_OUTPUT_LIMIT
        self._current_run: Any = None
        self._state_lock = threading.Lock()
        self._queued: set[Any] = set()
        self._cancelled: set[Any] = set()
        self._streamed: tuple[Any, int] = (None, 0)
        self._site_dirs: list[str] = []
        self._shutting_down = False
        self._fflush: Callable[[], None] | None = None

    # -- entry point ---------------------------------------------------------------------
    def serve(self) -> int:
        """Run until the host says ``shutdown`` or goes away; return the exit status."""
        signal.signal(signal.SIGINT, self._gate.handler)
        threading.Thread(target=self._read_loop, name="py-code-mode-reader", daemon=True).start()
        self._capture.start()
        self.send(
            {
                "kind": "hello",
                "version": wire.PROTOCOL_VERSION,
                "pid": os.getpid(),
                "python": "{}.{}.{}".format(*sys.version_info[:3]),
                "executable": sys.executable,
            }
        )
        while True:
            message = self._commands.get()
            if message is None:
                return 1
            kind = message["kind"]
            if kind == "shutdown":
                self._shutting_down = True
                self._exit_now()
            elif kind == "run":
                self._run(message)
            elif kind == "reset":
                self._runtime_or_default().reset()
                self.send({"kind": "reset_done", "id": message.get("id")})
            elif kind == "configure":
                self._configure(message)

    def _exit_now(self) -> NoReturn:
        """Exit promptly: run exit handlers, flush, and skip joining agent threads."""
        if self._runtime is not None:
            self._runtime.close()
        try:
            atexit._run_exitfuncs()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    stream.flush()
            os._exit(0)

    # -- HostChannel -----------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any]) -> Any:
        """Send one namespace call to the host and wait for its answer."""
        request_id = next(self._ids)
        waiter = _Waiter()
        self._pending[request_id] = waiter
        try:
            try:
                self.send({"kind": "rpc", "id": request_id, "method": method, "params": params})
            except wire.UnsupportedValueError as exc:
                raise _namespace_error(method, f"{method}(): {exc}") from None
            except wire.FrameTooLargeError as exc:
                raise _namespace_error(
                    method, f"{method}(): the arguments are too large to send to the host: {exc}"
                ) from None
            except OSError:
                raise _namespace_error("host", "the connection to the host was lost") from None
            waiter.wait()
        finally:
            self._pending.pop(request_id, None)
        if not waiter.ok:
            raise error_from_payload(waiter.error)
        if method.startswith("deps."):
            self._refresh_site_dirs()
        return waiter.value

    # -- sending -----------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        """Write one message; the main thread cannot be interrupted mid-frame."""
        frame = wire.encode_message(message, self._max_frame)
        in_main = threading.get_ident() == self._main_ident
        if in_main:
            self._gate.critical += 1
        try:
            with self._send_lock:
                wire.write_frame(self._transport.wfile, frame)
        finally:
            if in_main:
                self._gate.leave_critical()

    def _log(self, level: str, message: str) -> None:
        with contextlib.suppress(wire.WireError, OSError):
            self.send({"kind": "log", "level": level, "message": message[:4000]})

    # -- reader thread ---------------------------------------------------------------
    def _read_loop(self) -> None:
        failure = ""
        try:
            while True:
                message = wire.read_message(self._transport.rfile, self._max_frame)
                if message is None:
                    break
                self._dispatch(message)
        except (wire.WireError, OSError, MemoryError) as exc:
            failure = f"worker could not read from the host: {type(exc).__name__}: {exc}"
        self._host_lost(failure)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["kind"]
        if kind == "rpc_result":
            waiter = self._pending.get(message.get("id"))  # type: ignore[arg-type]
            if waiter is not None:
                waiter.resolve(bool(message.get("ok")), message.get("value"), message.get("error"))
        elif kind == "interrupt":
            target = message.get("id")
            with self._state_lock:
                if self._current_run is not None and target == self._current_run:
                    signal.pthread_kill(self._main_ident, signal.SIGINT)
                elif isinstance(target, int | str) and target in self._queued:
                    self._cancelled.add(target)  # not started yet: it will not start
        elif kind == "run":
            if isinstance(message.get("id"), int | str):
                with self._state_lock:
                    self._queued.add(message["id"])
            self._commands.put(message)
        elif kind in ("reset", "configure", "shutdown"):
            self._commands.put(message)
        else:
            self._log("warning", f"worker ignored an unexpected {kind!r} message")

    def _host_lost(self, failure: str) -> None:
        if failure:
            self._log("fatal", failure)
        if self._shutting_down:
            return
        # Nobody is left to serve or to clean up after us: end this process and
        # everything it started.
        for waiter in list(self._pending.values()):
            waiter.resolve(False, None, {"type": "HostError", "message": "host connection lost"})
        try:
            if os.getpgrp() == os.getpid():
                os.killpg(os.getpgrp(), signal.SIGKILL)
        finally:
            os._exit(1)

    # -- runs --------------------------------------------------------------------------
    def current_output(self) -> Any:
        """The active run's output buffer, or None between runs."""
        runtime = self._runtime
        return None if runtime is None else runtime.current_output

    def stream_output(self) -> None:
        """Send output the active run printed since the last chunk (drain thread)."""
        run_id = self._current_run
        buffer = self.current_output()
        if run_id is None or buffer is None or run_id != self._current_run:
            return
        streamed_id, index = self._streamed
        if streamed_id != run_id:
            index = 0
        text, index = buffer.read_from(index)
        self._streamed = (run_id, index)
        if text:
            with contextlib.suppress(wire.WireError, OSError):
                self.send({"kind": "output", "id": run_id, "text": text})

    def _runtime_or_default(self) -> WorkerRuntime:
        if self._runtime is None:
            self._runtime = WorkerRuntime(
                self,
                output_limit=self._output_limit,
                before_collect=self._before_collect,
                output_buffer=self._capture.buffer,
            )
        return self._runtime

    def _run(self, message: dict[str, Any]) -> None:
        run_id = message.get("id")
        if not isinstance(run_id, int | str):
            run_id = None
        code = message.get("code")
        if not isinstance(code, str):
            with self._state_lock:
                self._queued.discard(run_id)
            self._send_result(
                run_id,
                RunOutcome(error="ProtocolError: run without code\n", error_type="HostError"),
            )
            return
        runtime = self._runtime_or_default()
        outcome: RunOutcome | None = None
        try:
            with self._state_lock:
                self._queued.discard(run_id)
                if run_id in self._cancelled:
                    self._cancelled.discard(run_id)
                    outcome = RunOutcome(
                        error="KeyboardInterrupt: interrupted before it started\n",
                        error_type="KeyboardInterrupt",
                    )
                else:
                    self._current_run = run_id
                    self._gate.deferred = False
                    self._gate.armed = True
            if outcome is None:
                outcome = runtime.run(code)
        except KeyboardInterrupt:
            # The interrupt landed outside agent code (just before it started, or in
            # the runtime's own bookkeeping): report it as an interrupted run.
            if outcome is None:
                buffer = runtime.current_output
                runtime.current_output = None
                outcome = RunOutcome(
                    stdout=buffer.getvalue() if buffer is not None else "",
                    error="KeyboardInterrupt\n",
                    error_type="KeyboardInterrupt",
                )
        finally:
            self._gate.armed = False
            with self._state_lock:
                self._current_run = None
        self._send_result(run_id, outcome)

    def _before_collect(self) -> None:
        self._gate.armed = False  # agent code is done; no interrupt may land from here on
        for stream in (sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        if self._fflush is not None:
            self._fflush()
        self._capture.flush_into_run()

    def _send_result(self, run_id: Any, outcome: RunOutcome) -> None:
        try:
            self.send({"kind": "result", "id": run_id, "outcome": outcome.to_dict()})
            return
        except (wire.UnsupportedValueError, wire.FrameTooLargeError) as exc:
            problem = exc
        # The value (or, with a huge output limit, the output) cannot travel: keep the
        # run's effects and say so instead of losing the whole result.
        outcome.value = None
        if outcome.error is None:
            outcome.error = (
                f"ValueError: the value of the last expression could not be sent back: "
                f"{problem}. Save it with artifacts.save() or return a smaller summary.\n"
            )
            outcome.error_type = "ValueError"
        try:
            self.send({"kind": "result", "id": run_id, "outcome": outcome.to_dict()})
        except (wire.UnsupportedValueError, wire.FrameTooLargeError):
            keep = max(self._max_frame // 16, 1024)
            outcome.stdout = (
                outcome.stdout[:keep] + "\n[... output truncated to fit one protocol frame ...]\n"
            )
            self.send({"kind": "result", "id": run_id, "outcome": outcome.to_dict()})

    # -- configuration -----------------------------------------------------------------
    def _configure(self, message: dict[str, Any]) -> None:
        limits = message.get("limits")
        warnings = apply_limits(limits if isinstance(limits, dict) else {})
        output_limit = message.get("output_limit")
        if isinstance(output_limit, int) and output_limit > 0:
            self._output_limit = output_limit
        max_frame = message.get("max_frame")
        if isinstance(max_frame, int) and max_frame > 0:
            self._max_frame = max_frame
        for directory in reversed(_str_list(message.get("site_dirs"))):
            if directory not in sys.path:
                sys.path.insert(0, directory)
            self._site_dirs.append(directory)
        self._refresh_site_dirs()
        for directory in _str_list(message.get("sys_path")):
            if directory not in sys.path:
                sys.path.append(directory)
        self._fflush = _libc_fflush()
        if self._runtime is not None:
            self._runtime.output_limit = self._output_limit
        self._runtime_or_default()
        self.send({"kind": "ready", "warnings": warnings})

    def _refresh_site_dirs(self) -> None:
        """Process ``.pth`` files of package directories that installs write into."""
        for directory in self._site_dirs:
            if os.path.isdir(directory):
                site.addsitedir(directory)


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


def _namespace_error(method: str, message: str) -> Exception:
    return error_from_payload({"type": namespace_error_type(method), "message": message})


def _libc_fflush() -> Callable[[], None] | None:
    """``fflush(NULL)``, so C-level ``printf`` output reaches the capture pipe."""
    try:
        import ctypes  # optional in minimal interpreters (a missing _ctypes)

        libc = ctypes.CDLL(None)
        fflush = libc.fflush
    except (ImportError, OSError, AttributeError):
        return None

    def flush() -> None:
        fflush(None)

    return flush


def main(argv: list[str] | None = None) -> int:
    """Start serving; ``argv`` selects the transport (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    transport = _open_transport(args)
    sys.argv = [""]
    egress.start_from_env()  # network="allowlist": the proxy's door on our loopback
    if os.getpgrp() != os.getpid():
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)  # our own process group, so we can end it as a whole
    # Keep the original stderr for the worker's own failures: the host shows its tail
    # when the worker dies. Agent output never goes there.
    diagnostics = os.fdopen(os.dup(2), "w", buffering=1, errors="backslashreplace")
    capture_fd = _redirect_std_fds()
    _start_watchdog(transport.poll_fd, (capture_fd, diagnostics.fileno()))
    try:
        return Worker(transport, capture_fd).serve()
    except BaseException:
        traceback.print_exc(file=diagnostics)
        raise
