"""The worker runtime: runs agent code and builds the four namespaces.

This package is stdlib-only and uses relative imports only, so the same files run
in the host process (in-process executor), in a child process (subprocess
executor) and inside any container image with ``python3`` >= 3.11 (container
executor). It reaches host capabilities only through a :class:`HostChannel`.
"""

from .channel import HostChannel
from .runtime import RunOutcome, WorkerRuntime

__all__ = ["HostChannel", "RunOutcome", "WorkerRuntime"]
