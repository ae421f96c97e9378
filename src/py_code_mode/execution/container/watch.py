"""Learning when and why a container ended: its exit status and OOM kills.

Containers run with ``auto_remove``, so once one exits it can no longer be
inspected. :class:`ExitWatch` waits (on a thread, started before the container)
for its removal and keeps the status; the kernel's OOM kills are learned from the
engine's event stream, watched by one thread per process (:data:`oom_events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

from py_code_mode.execution.container.engine import api, docker_errors, engine_of
from py_code_mode.execution.container.reaper import LABEL_OWNER_PID

__all__ = ["GONE", "ExitWatch", "oom_events"]

logger = logging.getLogger(__name__)

GONE = -(1 << 16)
"""Exit status when the container vanished before its status could be read."""


class _OomEvents:
    """Ids of this process's containers that hit their memory limit (Docker "oom" events)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[str] = set()
        self._started = False

    def start(self) -> None:
        """Start watching (once; again after the stream ended)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._watch, name="py-code-mode-oom-events", daemon=True).start()

    def _watch(self) -> None:
        filters = {
            "type": "container",
            "event": ["oom"],
            "label": [f"{LABEL_OWNER_PID}={os.getpid()}"],
        }
        try:
            for event in api("unbounded").events(filters=filters, decode=True):
                container_id = event.get("id") if isinstance(event, dict) else None
                if isinstance(container_id, str):
                    with self._lock:
                        self._ids.add(container_id)
        except Exception:  # without events, exits are only less precisely named
            logger.debug("the Docker event stream ended", exc_info=True)
            with self._lock:
                self._started = False

    def seen(self, container_id: str, wait: float = 0.0) -> bool:
        """Whether the container ran out of memory, waiting up to ``wait`` s (blocking)."""
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                if container_id in self._ids:
                    self._ids.discard(container_id)
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


oom_events = _OomEvents()


class ExitWatch:
    """Waits (in a thread) for a container to be removed and keeps its exit status.

    Started before the container, so no exit can be missed; callbacks run on the
    event loop of whoever owns the container by then.
    """

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self._lock = threading.Lock()
        self.status: int | None = None
        self.oom = False
        self.done = False
        self._callbacks: list[tuple[asyncio.AbstractEventLoop, Callable[[int], None]]] = []
        threading.Thread(
            target=self._wait, name=f"py-code-mode-wait-{container_id[:12]}", daemon=True
        ).start()

    def _wait(self) -> None:
        errors = docker_errors()
        status = GONE
        try:
            engine = engine_of(self.container_id)
            answer = api("unbounded", engine).wait(self.container_id, condition="removed")
            status = int(answer.get("StatusCode", GONE))
        except (errors.DockerException, OSError, ValueError):
            status = GONE
        except Exception:
            logger.debug("waiting for container %s failed", self.container_id[:12], exc_info=True)
        # SIGKILL: the "oom" event (sent before the exit) says whether memory ran out.
        oom = status == 137 and oom_events.seen(self.container_id, wait=0.2)
        with self._lock:
            self.status = status
            self.oom = oom
            self.done = True
            callbacks, self._callbacks = self._callbacks, []
        for loop, callback in callbacks:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(callback, status)

    def subscribe(self, loop: asyncio.AbstractEventLoop, callback: Callable[[int], None]) -> None:
        """Call ``callback(status)`` on ``loop`` once the container is gone (now if it is)."""
        with self._lock:
            if not self.done:
                self._callbacks.append((loop, callback))
                return
            status = self.status if self.status is not None else GONE
        loop.call_soon_threadsafe(callback, status)
