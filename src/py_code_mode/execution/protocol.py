"""The executor axis: where agent code runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from py_code_mode.result import ExecutionResult

if TYPE_CHECKING:
    from py_code_mode._private.services import HostServices

__all__ = ["Executor", "PackageEnvironment"]


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
    """Runs agent code against namespaces backed by :class:`HostServices`.

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

    async def start(self, host: HostServices) -> None:
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
