"""The executor axis: where agent code runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from py_code_mode.result import ExecutionResult
from py_code_mode.storage.protocol import StorageBackend

__all__ = ["Executor", "Host", "PackageEnvironment"]


class Host(Protocol):
    """What an executor needs of the host: the storage and one entry for namespace calls.

    The session passes its host services at :meth:`Executor.start`; executors depend
    on this protocol, not on the class, so the execution layer never imports the layer
    that drives it.
    """

    @property
    def storage(self) -> StorageBackend:
        """Where the deps list lives (read at start to install what it names)."""
        ...

    async def dispatch(self, method: str, params: Mapping[str, Any]) -> Any:
        """Run one namespace call from agent code; its errors are the library's."""
        ...


@runtime_checkable
class PackageEnvironment(Protocol):
    """The Python environment agent code imports from; ``deps`` installs into it."""

    async def install(self, specs: Sequence[str]) -> str:
        """Install validated requirement specs; returns installer output.

        Raises:
            DependencyError: The installer failed; the message carries its output.
        """
        ...

    async def uninstall(self, names: Sequence[str]) -> str:
        """Uninstall distributions by name; returns installer output."""
        ...


@runtime_checkable
class Executor(PackageEnvironment, Protocol):
    """Runs agent code against namespaces backed by the :class:`Host`.

    An executor owns the tool directory and the Python environment; the session owns
    storage and wires both together at :meth:`start`.
    """

    @property
    def tools_path(self) -> Path | None:
        """Directory of tool YAML files, or ``None`` for no tools."""
        ...

    @property
    def allow_runtime_deps(self) -> bool:
        """Whether ``deps.add``/``deps.remove`` may change the environment."""
        ...

    @property
    def configured_deps(self) -> list[str]:
        """Requirement specs from the executor's config (``deps`` and ``deps_file``)."""
        ...

    async def start(self, host: Host) -> None:
        """Start the worker; namespace calls from agent code go to ``host``."""
        ...

    async def run(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Run agent code; agent errors come back in the result, never raised."""
        ...

    async def reset(self) -> None:
        """Clear the agent's variables, keeping the worker if possible."""
        ...

    async def close(self) -> None:
        """Stop the worker and release everything. Idempotent."""
        ...
