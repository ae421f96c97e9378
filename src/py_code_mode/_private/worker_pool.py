"""Pre-started jailed workers, so a session starts without waiting for Python to boot.

With ``SubprocessConfig(warm_pool=N)`` up to N workers per configuration wait here,
process-wide, each already running in its own jail with its own scratch directory
(package overlay) and cgroup, blocked on its socket until a session configures it.
A session takes one whole: the worker, its jail and its scratch become the session's,
so nothing is shared between sessions. The pool refills in the background on the
event loop that took from it (the jail dies with the thread that started it, so
workers are never started from short-lived threads). At interpreter exit the waiting
workers are killed and their directories and cgroups removed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from py_code_mode._private.worker_jail import WorkerJail

__all__ = ["PooledWorker", "WorkerPool", "pool"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class PooledWorker:
    """A started worker waiting for a session, with everything it runs in."""

    proc: subprocess.Popen[bytes]
    sock: socket.socket
    scratch: Path
    jail: WorkerJail

    def discard(self) -> None:
        """Kill it and remove what it owned (blocking, quick)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2)
        self.sock.close()
        if self.jail.cgroup is not None:
            self.jail.cgroup.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class WorkerPool:
    """Waiting workers per configuration key."""

    def __init__(self) -> None:
        self._ready: dict[str, deque[PooledWorker]] = {}
        self._filling: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def take(self, key: str) -> PooledWorker | None:
        """A waiting worker that is still alive, or None."""
        queue = self._ready.get(key)
        while queue:
            slot = queue.popleft()
            if slot.proc.poll() is None:
                return slot
            slot.discard()
        return None

    def count(self, key: str) -> int:
        """How many workers of ``key`` wait."""
        return len(self._ready.get(key, ()))

    def waiting(self) -> int:
        """How many workers wait, all keys together."""
        return sum(len(queue) for queue in self._ready.values())

    def ensure(self, key: str, size: int, make: Callable[[], Awaitable[PooledWorker]]) -> None:
        """Refill ``key`` up to ``size`` workers in the background (on the running loop)."""
        if key in self._filling or self.count(key) >= size:
            return
        self._filling.add(key)

        async def fill() -> None:
            try:
                while self.count(key) < size:
                    slot = await make()
                    self._ready.setdefault(key, deque()).append(slot)
            except Exception as exc:  # noqa: BLE001 - the pool is an optimisation
                logger.warning("could not pre-start a worker for the pool: %s", exc)
            finally:
                self._filling.discard(key)

        task = asyncio.get_running_loop().create_task(fill())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def drain(self) -> None:
        """Kill every waiting worker (at exit, and in tests)."""
        for queue in self._ready.values():
            while queue:
                queue.popleft().discard()


pool = WorkerPool()
atexit.register(pool.drain)
