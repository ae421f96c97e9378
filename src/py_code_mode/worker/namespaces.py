"""The ``tools``, ``workflows``, ``artifacts`` and ``deps`` objects agent code uses.

Each is a thin proxy over the host channel: arguments go out as JSON, results come
back as JSON. Workflows are the exception: their source comes from the host but
they execute here, in the worker, so they can import packages installed in it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from .channel import HostChannel
from .errors import ToolNotFoundError, WorkflowError, WorkflowNotFoundError

_Records = list[dict[str, Any]]
_Names = list[str]
# Aliases: inside the classes below ``list`` names the namespace method, not the type.

__all__ = [
    "ArtifactsNamespace",
    "DepsNamespace",
    "ToolsNamespace",
    "WorkflowsNamespace",
    "build_namespaces",
]


class WorkflowRunner(Protocol):
    """What the workflows namespace needs of the runtime that builds it."""

    def compile_workflow(self, name: str, source: str) -> dict[str, Any]:
        """Execute workflow source into a fresh module namespace and return it."""
        ...

    def run_coroutine(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine to completion from synchronous code."""
        ...

    def show_image(self, value: Any, name: str | None = None) -> str:
        """Save an image as an artifact and show it in this run's reply; its name."""
        ...


def build_namespaces(host: HostChannel, runtime: WorkflowRunner) -> dict[str, Any]:
    """The four namespaces, wired to ``host``."""
    workflows = WorkflowsNamespace(host, runtime)
    return {
        "tools": ToolsNamespace(host),
        "workflows": workflows,
        "artifacts": ArtifactsNamespace(host, runtime),
        "deps": DepsNamespace(host),
    }


def _no_positional(owner: str, args: tuple[Any, ...]) -> None:
    if args:
        raise TypeError(f"{owner}() takes keyword arguments only, e.g. {owner}(url='...')")


# -- tools ------------------------------------------------------------------------------
class ToolCallable:
    """``tools.<tool>.<callable>``: calls one recipe / MCP tool / HTTP endpoint."""

    __slots__ = ("_callable", "_host", "_tool")

    def __init__(self, host: HostChannel, tool: str, callable_name: str) -> None:
        self._host = host
        self._tool = tool
        self._callable = callable_name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _no_positional(f"tools.{self._tool}.{self._callable}", args)
        return self._host.call(
            "tools.call", {"tool": self._tool, "callable": self._callable, "args": kwargs}
        )

    def __repr__(self) -> str:
        return f"<tool callable tools.{self._tool}.{self._callable}>"


class Tool:
    """``tools.<tool>``: call it directly, or reach its callables as attributes."""

    __slots__ = ("_host", "_name")

    def __init__(self, host: HostChannel, name: str) -> None:
        self._host = host
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _no_positional(f"tools.{self._name}", args)
        return self._host.call("tools.call", {"tool": self._name, "callable": None, "args": kwargs})

    def __getattr__(self, name: str) -> ToolCallable:
        if name.startswith("_"):
            raise AttributeError(name)
        return ToolCallable(self._host, self._name, name)

    def describe(self) -> dict[str, Any]:
        """This tool's entry of ``tools.list()``: description and callables."""
        for entry in self._host.call("tools.list", {}):
            if entry.get("name") == self._name:
                return dict(entry)
        raise ToolNotFoundError(f"tool {self._name!r} no longer exists")

    def __repr__(self) -> str:
        return f"<tool {self._name}: tools.{self._name}.describe() lists its callables>"


class ToolsNamespace:
    """Tools declared in YAML (CLI, MCP servers, HTTP APIs), running on the host."""

    def __init__(self, host: HostChannel) -> None:
        self._host = host
        self._names: _Names | None = None

    def list(self) -> _Records:
        """Every tool with its description and callables (name, description, parameters)."""
        result: _Records = self._host.call("tools.list", {})
        return result

    def search(self, query: str, limit: int = 5) -> _Records:
        """Tools ranked by relevance to ``query``, best first, with ``score`` and ``why``."""
        result: _Records = self._host.call("tools.search", {"query": query, "limit": limit})
        return result

    def names(self) -> _Names:
        """Names of all tools."""
        if self._names is None:
            self._names = list(self._host.call("tools.names", {}))
        return list(self._names)

    def __getattr__(self, name: str) -> Tool:
        if name.startswith("_"):
            raise AttributeError(name)
        names = self.names()
        if name not in names:
            # The host's answer also names tool files that failed to load. The callable
            # name "-" can never exist, so nothing is called if the tool turned up.
            self._host.call("tools.call", {"tool": name, "callable": "-", "args": {}})
            available = ", ".join(names) or "none (add YAML files to the tools directory)"
            raise ToolNotFoundError(f"no tool named {name!r}; available tools: {available}")
        return Tool(self._host, name)

    def __dir__(self) -> _Names:
        return [*super().__dir__(), *self.names()]

    def __repr__(self) -> str:
        return f"<tools: {', '.join(self.names()) or 'none'}; tools.list() describes them>"


# -- workflows --------------------------------------------------------------------------
class WorkflowsNamespace:
    """The shared library of reusable recipes: search before writing new code."""

    def __init__(self, host: HostChannel, runtime: WorkflowRunner) -> None:
        self._host = host
        self._runtime = runtime
        self._modules: dict[str, tuple[str, dict[str, Any]]] = {}

    def list(self) -> _Records:
        """All workflows: name, description, parameters (no source)."""
        result: _Records = self._host.call("workflows.list", {})
        return result

    def search(self, query: str, limit: int = 5) -> _Records:
        """Workflows ranked by relevance to ``query``, best first, with ``score`` and ``why``."""
        result: _Records = self._host.call("workflows.search", {"query": query, "limit": limit})
        return result

    def get(self, name: str) -> dict[str, Any]:
        """One workflow including its source."""
        result: dict[str, Any] = self._host.call("workflows.get", {"name": name})
        return result

    def create(
        self,
        name: str,
        source: str,
        description: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Save a workflow (source defining ``run(...)``) to the shared library."""
        result: dict[str, Any] = self._host.call(
            "workflows.create",
            {"name": name, "source": source, "description": description, "metadata": metadata},
        )
        self._modules.pop(name, None)
        return result

    def delete(self, name: str) -> bool:
        """Remove a workflow; ``False`` when it did not exist."""
        self._modules.pop(name, None)
        return bool(self._host.call("workflows.delete", {"name": name}))

    def invoke(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Run workflow ``name`` here with the given arguments and return its result."""
        record = self._host.call("workflows.get", {"name": name})
        return self._invoke_record(record, args, kwargs)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            record = self._host.call("workflows.get", {"name": name})
        except WorkflowNotFoundError:
            names = [w["name"] for w in self.list()]
            raise WorkflowNotFoundError(
                f"no workflow named {name!r}; available: {', '.join(names) or 'none'}"
            ) from None

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._invoke_record(record, args, kwargs)

        call.__name__ = name
        call.__doc__ = record.get("description") or None
        return call

    def _invoke_record(
        self, record: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        name = record["name"]
        source = record["source"]
        cached = self._modules.get(name)
        if cached is not None and cached[0] == source:
            module = cached[1]
        else:
            module = self._runtime.compile_workflow(name, source)
            self._modules[name] = (source, module)
        run = module.get("run")
        if not callable(run):
            raise WorkflowError(f"workflow {name!r} does not define a callable run()")
        result = run(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = self._runtime.run_coroutine(result)
        return result

    def __repr__(self) -> str:
        return "<workflows: list(), search(q), get(name), invoke(name, **kw), create(...), delete>"


# -- artifacts --------------------------------------------------------------------------
class ArtifactsNamespace:
    """Persistent data by name: str, bytes and JSON values keep their type."""

    def __init__(self, host: HostChannel, runtime: WorkflowRunner | None = None) -> None:
        self._host = host
        self._runtime = runtime

    def show(self, image: Any, name: str | None = None) -> str:
        """Save an image (PNG/JPEG bytes, PIL image, matplotlib figure) and show it.

        The MCP reply of this run carries the image; returns the artifact's name.
        """
        if self._runtime is None:
            raise RuntimeError("artifacts.show() needs a running session")
        return self._runtime.show_image(image, name)

    def save(
        self,
        name: str,
        data: Any,
        description: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store ``data`` under ``name``; returns its index entry."""
        result: dict[str, Any] = self._host.call(
            "artifacts.save",
            {"name": name, "data": data, "description": description, "metadata": metadata},
        )
        return result

    def load(self, name: str) -> Any:
        """The stored value, of the type it was saved with."""
        return self._host.call("artifacts.load", {"name": name})

    def list(self) -> _Records:
        """Index entries: name, kind, description, metadata, size, timestamps."""
        result: _Records = self._host.call("artifacts.list", {})
        return result

    def exists(self, name: str) -> bool:
        """True when an artifact of that name exists."""
        return bool(self._host.call("artifacts.exists", {"name": name}))

    def info(self, name: str) -> dict[str, Any] | None:
        """Index entry of one artifact, or ``None``."""
        result: dict[str, Any] | None = self._host.call("artifacts.info", {"name": name})
        return result

    def delete(self, name: str) -> bool:
        """Remove an artifact; ``False`` when it did not exist."""
        return bool(self._host.call("artifacts.delete", {"name": name}))

    def __repr__(self) -> str:
        return (
            "<artifacts: save(name, data), load(name), list(), exists(name), delete(name), "
            "show(image)>"
        )


# -- deps -------------------------------------------------------------------------------
class DepsNamespace:
    """Packages of this execution environment, persisted with the session's storage."""

    def __init__(self, host: HostChannel) -> None:
        self._host = host

    def list(self) -> _Names:
        """The persisted requirement specs."""
        return list(self._host.call("deps.list", {}))

    def add(self, spec: str) -> dict[str, Any]:
        """Install a package (PEP 508 spec, e.g. ``"pandas>=2"``) and persist it."""
        result: dict[str, Any] = self._host.call("deps.add", {"spec": spec})
        importlib.invalidate_caches()
        return result

    def remove(self, spec: str) -> bool:
        """Uninstall a package and drop it from the list; ``False`` if it was not listed."""
        removed = bool(self._host.call("deps.remove", {"spec": spec}))
        importlib.invalidate_caches()
        return removed

    def sync(self) -> dict[str, Any]:
        """Install every persisted spec that is missing from the environment."""
        result: dict[str, Any] = self._host.call("deps.sync", {})
        importlib.invalidate_caches()
        return result

    def __repr__(self) -> str:
        return "<deps: list(), add(spec), remove(spec), sync()>"
