"""The warm pool: started containers waiting for sessions, per configuration.

With ``ContainerConfig.warm_pool=N``, N containers whose workers already said hello
wait here per configuration key (:attr:`Spec.key`), process-wide, so a session start
(or a restart after a timeout) takes a ready container instead of creating one.
At interpreter exit the pool is drained and every container this process still
has is removed.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque

from py_code_mode.execution.container.engine import remove_all_live
from py_code_mode.execution.container.launch import Launched, launch
from py_code_mode.execution.container.spec import Spec

__all__ = ["WarmPool", "pool"]

logger = logging.getLogger(__name__)


class WarmPool:
    """Started containers waiting for sessions, per configuration key, process-wide.

    Filled by one background thread per key, so it is independent of event loops.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: dict[str, deque[Launched]] = {}
        self._targets: dict[str, int] = {}
        self._filling: set[str] = set()
        self._failures: dict[str, str] = {}
        self._closed = False

    def take(self, spec: Spec) -> Launched | None:
        """A ready container of ``spec``'s configuration, or None (blocking: drops dead ones)."""
        while True:
            with self._lock:
                queue = self._ready.get(spec.key)
                launched = queue.popleft() if queue else None
            if launched is None:
                return None
            if not launched.watch.done:
                return launched
            launched.discard()

    def count(self, key: str) -> int:
        """How many containers of ``key`` wait."""
        with self._lock:
            return len(self._ready.get(key, ()))

    def ids(self, key: str) -> list[str]:
        """Ids of the containers of ``key`` that wait."""
        with self._lock:
            return [item.container_id for item in self._ready.get(key, ())]

    def failure(self, key: str) -> str:
        """Why filling ``key`` last failed ("" if it did not)."""
        with self._lock:
            return self._failures.get(key, "")

    def ensure(self, spec: Spec, target: int) -> None:
        """Keep at least ``target`` containers of ``spec`` ready, filling in the background."""
        with self._lock:
            if self._closed:
                return
            self._targets[spec.key] = max(target, self._targets.get(spec.key, 0))
            if spec.key in self._filling:
                return
            self._filling.add(spec.key)
            self._failures.pop(spec.key, None)
        threading.Thread(
            target=self._fill, args=(spec,), name=f"py-code-mode-pool-{spec.key}", daemon=True
        ).start()

    def _fill(self, spec: Spec) -> None:
        try:
            while True:
                with self._lock:
                    queue = self._ready.setdefault(spec.key, deque())
                    for stale in [item for item in queue if item.watch.done]:
                        queue.remove(stale)
                    if len(queue) >= self._targets.get(spec.key, 0):
                        return
                try:
                    launched = launch(spec, spec.startup_timeout)
                except Exception as exc:  # noqa: BLE001 - the pool is an optimisation
                    with self._lock:
                        if self._closed or spec.key not in self._targets:
                            return  # drained meanwhile: the failure is ours
                        self._failures[spec.key] = str(exc)
                    logger.warning("could not fill the warm pool: %s", exc)
                    return
                with self._lock:
                    if spec.key in self._targets and not self._closed:
                        self._ready.setdefault(spec.key, deque()).append(launched)
                        launched = None  # type: ignore[assignment]
                if launched is not None:
                    launched.discard()
                    return
        finally:
            with self._lock:
                self._filling.discard(spec.key)

    def drain(self, key: str | None = None) -> int:
        """Stop refilling ``key`` (every key for None) and remove its containers; how many."""
        with self._lock:
            keys = list(self._ready) if key is None else [key]
            items = [item for k in keys for item in self._ready.pop(k, ())]
            for k in keys:
                self._targets.pop(k, None)
        for item in items:
            item.discard()
        return len(items)

    def close(self) -> None:
        """Drain everything and stop refilling (at interpreter exit)."""
        with self._lock:
            self._closed = True
        self.drain(None)


pool = WarmPool()
"""The process's pool."""


@atexit.register
def _remove_all_at_exit() -> None:
    pool.close()
    remove_all_live()
