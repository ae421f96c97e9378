"""The tool axis: adapters that turn a YAML declaration into callables.

A *tool* (``curl``, an MCP server, an HTTP API) exposes one or more *callables*
(a CLI recipe, an MCP server tool, an HTTP endpoint). Agent code reaches them as
``tools.<tool>.<callable>(**kwargs)``; a CLI tool is also callable directly as
``tools.<tool>(**kwargs)`` (callable name ``None``).

All adapters run on the host: credentials in their configuration never reach the
sandboxed worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["CallableSpec", "DirectlyCallable", "ParameterSpec", "ToolAdapter", "ToolLoadProblem"]


@dataclass(frozen=True, slots=True)
class ParameterSpec:
    """One parameter of a tool callable, in JSON-schema-ish terms."""

    name: str
    type: str = "string"
    description: str = ""
    required: bool = False
    default: Any = None


@dataclass(frozen=True, slots=True)
class CallableSpec:
    """A callable of a tool: a recipe, an MCP tool, an HTTP endpoint."""

    name: str
    description: str = ""
    parameters: tuple[ParameterSpec, ...] = ()
    input_schema: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": {
                p.name: {k: v for k, v in asdict(p).items() if k != "name"} for p in self.parameters
            },
            **({"input_schema": self.input_schema} if self.input_schema is not None else {}),
        }


@dataclass(frozen=True, slots=True)
class ToolLoadProblem:
    """A tool file that could not be loaded; the others still are."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@runtime_checkable
class ToolAdapter(Protocol):
    """A loaded tool. Implementations: CLI (argv), MCP server, HTTP API."""

    name: str
    description: str
    kind: str
    """``"cli"``, ``"mcp"`` or ``"http"``."""

    async def callables(self) -> list[CallableSpec]:
        """The callables this tool offers (an MCP adapter may connect to list them)."""
        ...

    async def call(self, callable_name: str | None, args: Mapping[str, Any]) -> Any:
        """Invoke a callable (``None``: the tool itself) and return JSON-able data.

        Raises:
            ToolNotFoundError: No such callable.
            ToolError: Bad arguments, non-zero exit, timeout, remote error.
        """
        ...

    async def aclose(self) -> None:
        """Release connections or processes. Idempotent."""
        ...


@runtime_checkable
class DirectlyCallable(Protocol):
    """A tool that is callable itself (``tools.curl(url=...)``), besides its callables.

    ``ToolAdapter.call(None, args)`` takes these parameters. The registry shows
    them as the tool-level ``parameters`` of ``tools.list()``.
    """

    def direct_parameters(self) -> tuple[ParameterSpec, ...]:
        """Parameters of the tool's own call."""
        ...
