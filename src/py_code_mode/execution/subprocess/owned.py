"""What a subprocess session owns outside this process, freed even if it is never closed.

``close()`` frees a session's worker, jail cgroup, egress proxy and scratch directory.
A session that is dropped without ``close()`` (garbage-collected, or still open when
the interpreter exits) would otherwise leave them behind for good: the scratch
directory in ``/tmp`` and the cgroup outlive the process. :class:`Owned` holds those
resources (and nothing that refers back to the executor, so it never keeps the
executor alive); a :func:`weakref.finalize` on the executor frees them at garbage
collection or at interpreter exit, whichever comes first. A host killed outright is
covered by the sweeps of the next start (:mod:`py_code_mode._private.scratch`, the
cgroup sweep).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from py_code_mode._private.worker_jail import WorkerJail
from py_code_mode._private.worker_pool import PooledWorker
from py_code_mode.execution._egress import SandboxEgress

__all__ = ["Owned", "OwnedField"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class Owned:
    """A session's external resources, as the executor last set them."""

    scratch: Path | None = None
    jail: WorkerJail | None = None
    egress: SandboxEgress | None = None
    pooled: PooledWorker | None = None
    proc: subprocess.Popen[bytes] | None = None

    def release(self, why: str) -> None:
        """Kill the worker and free everything still held (blocking; idempotent)."""
        held = [name for name in ("scratch", "jail", "egress", "pooled") if getattr(self, name)]
        if not held:
            return
        logger.warning("a subprocess session was %s without close(); freeing its %s", why, held)
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2)
        pooled, self.pooled = self.pooled, None
        if pooled is not None:
            pooled.discard()
        jail, self.jail = self.jail, None
        if jail is not None and jail.cgroup is not None:
            jail.cgroup.close()
        egress, self.egress = self.egress, None
        if egress is not None:
            egress.close()
        scratch, self.scratch = self.scratch, None
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


class OwnedField(Generic[T]):
    """An executor attribute stored in the executor's :class:`Owned` (``_owned``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._field = name.lstrip("_")

    def __get__(self, instance: Any, owner: type | None = None) -> T:
        value: T = getattr(instance._owned, self._field)
        return value

    def __set__(self, instance: Any, value: T) -> None:
        setattr(instance._owned, self._field, value)
