"""One worker child process: how it is started, watched and stopped.

The worker leads its own process group, so stopping it also ends whatever agent
code started. Its exit is watched on the process itself (a pidfd, else a waiting
thread), never on pipes that forked children may keep open; its stderr carries only
the worker's own diagnostics, of which the tail is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from py_code_mode.execution._isolated.client import STDERR_TAIL, WorkerConnection
from py_code_mode.execution._isolated.source import WORKER_PACKAGE

if TYPE_CHECKING:
    from py_code_mode.execution.protocol import Host

__all__ = ["WorkerProcess", "popen_worker"]

_BOOTSTRAP = (
    "import sys;sys.path.insert(0,sys.argv[1]);"
    f"from {WORKER_PACKAGE}.server import main;"
    "del sys.path[0];sys.exit(main(sys.argv[2:]))"
)


def popen_worker(
    python: Path,
    worker_root: Path,
    fd: int,
    env: dict[str, str],
    cwd: Path,
    *,
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> subprocess.Popen[bytes]:
    """Start the worker from its copy in ``worker_root``, talking over the socket ``fd``.

    ``wrap`` turns the worker's argv into the one to run (the bubblewrap jail).

    Raises:
        OSError: The interpreter cannot be started.
    """
    argv = [
        str(python),
        "-P",  # never import from the working directory before the worker is set up
        "-s",
        "-c",
        _BOOTSTRAP,
        str(worker_root),
        "--fd",
        str(fd),
    ]
    if wrap is not None:
        argv = wrap(argv)
    # Plain Popen rather than asyncio's: its wait() would also wait for pipes that
    # processes forked by agent code can hold open long after the worker died.
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=(fd,),
        env=env,
        cwd=cwd,
        start_new_session=True,  # its own process group, killed as a whole
    )


class WorkerProcess(WorkerConnection):
    """A worker child process: the shared protocol connection plus the process group."""

    jailed = False
    """Started by bubblewrap, which turns the worker's death by signal n into 128 + n."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: Host,
        *,
        max_frame: int,
        output_limit: int,
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._pidfd = -1
        self._stderr = b""
        super().__init__(
            reader,
            writer,
            host,
            label=str(proc.pid),
            max_frame=max_frame,
            output_limit=output_limit,
        )
        self._watch_exit()
        self._watch_stderr()

    @property
    def stderr_tail(self) -> str:
        """The end of the worker's own diagnostics (never agent output)."""
        return self._stderr.decode(errors="replace").strip()

    def _watch_stderr(self) -> None:
        # The worker's own failures (never agent output) arrive here; keep the tail.
        stream = self.proc.stderr
        if stream is None:
            return
        fd = stream.fileno()
        os.set_blocking(fd, False)

        def readable() -> None:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if chunk:
                self._stderr = (self._stderr + chunk)[-STDERR_TAIL:]
            else:
                self._close_stderr()

        self._loop.add_reader(fd, readable)

    def _close_stderr(self) -> None:
        stream = self.proc.stderr
        if stream is not None and not stream.closed:
            self._loop.remove_reader(stream.fileno())
            stream.close()

    def _watch_exit(self) -> None:
        # Exit is watched on the process itself, not on pipes that forked children
        # may keep open: a pidfd where the kernel has them, else a waiting thread.
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = -1
        if self._pidfd >= 0:
            self._loop.add_reader(self._pidfd, lambda: self._exited(self.proc.wait()))
            return

        def wait() -> None:
            returncode = self.proc.wait()
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._exited, returncode)

        threading.Thread(target=wait, name=f"py-code-mode-wait-{self.pid}", daemon=True).start()

    def check_alive(self) -> bool:
        """Notice an exit the event loop has not processed yet; True if still running."""
        if not self.dead.is_set():
            returncode = self.proc.poll()
            if returncode is not None:
                self._exited(returncode)
        return not self.dead.is_set()

    def _exited(self, returncode: int) -> None:
        if self.jailed and returncode > 128:
            returncode = 128 - returncode  # bwrap reports its child's signal as 128 + n
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        super()._exited(returncode)

    # -- stopping ----------------------------------------------------------------------
    def _terminate(self) -> None:
        # The worker leads its own process group: this ends it, the watchdog and
        # whatever agent code started (unless that left the group on purpose).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def _release(self) -> None:
        self._close_stderr()
