"""The tool registry: loads a folder of YAML tool files and routes calls to them.

One file declares one tool. The ``type`` field (default ``cli``) picks the
adapter through :data:`TOOL_LOADERS`, so new kinds of tool plug in with one
line. A broken file never stops the others from loading: it becomes a
:class:`~py_code_mode.tools.protocol.ToolLoadProblem` naming the file and the
field, is logged as a warning, and is listed in :attr:`ToolRegistry.problems`.

Parsing (PyYAML, pydantic) happens in a worker thread when a folder is loaded; the
adapters of each ``type`` are imported on first use.
"""

from __future__ import annotations

import asyncio
import builtins
import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import yaml
from pydantic import ValidationError

from py_code_mode.errors import ConfigError, PyCodeModeError, ToolNotFoundError
from py_code_mode.search.lexical import SearchDocument
from py_code_mode.tools.models import describe_validation_error
from py_code_mode.tools.protocol import (
    CallableSpec,
    DirectlyCallable,
    ToolAdapter,
    ToolLoadProblem,
)

__all__ = [
    "MAX_TOOL_FILE_BYTES",
    "TOOL_LOADERS",
    "ConfirmRule",
    "ToolRegistry",
    "load_tool_directory",
    "load_tool_directory_with_rules",
    "tool_search_document",
]

logger = logging.getLogger(__name__)

ToolLoader = Callable[[Mapping[str, Any], Path], ToolAdapter]
"""Builds an adapter from a parsed YAML mapping and the file it came from.

It may raise ``pydantic.ValidationError`` or :class:`ConfigError`; the registry
turns either into a load problem.
"""

TOOL_LOADERS: Final[dict[str, str]] = {
    "cli": "py_code_mode.tools.models:load_cli_tool",
    "mcp": "py_code_mode.tools.mcp:load_mcp_tool",
    "http": "py_code_mode.tools.http:load_http_tool",
}
"""``type`` value -> ``module:function`` of a :data:`ToolLoader`, imported on first use."""

TOOL_FILE_SUFFIXES: Final = (".yaml", ".yml")
MAX_TOOL_FILE_BYTES: Final = 1024 * 1024
"""Tool files are small; a bigger one is refused rather than parsed."""


@dataclass(frozen=True)
class ConfirmRule:
    """What a tool file marks ``confirm: true``: the whole tool, or some recipes."""

    tool: bool = False
    callables: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return self.tool or bool(self.callables)


class _FileProblemError(Exception):
    """A tool file cannot be used; the message names the field when there is one."""


def _resolve_loader(tool_type: str) -> ToolLoader:
    module_name, _, attribute = TOOL_LOADERS[tool_type].partition(":")
    return cast(ToolLoader, getattr(importlib.import_module(module_name), attribute))


def _read_yaml(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_TOOL_FILE_BYTES:
            raise _FileProblemError(f"file is larger than {MAX_TOOL_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _FileProblemError(
            f"file is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    except OSError as exc:
        raise _FileProblemError(f"cannot read file: {exc.strerror or exc}") from exc
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        raise _FileProblemError(f"invalid YAML{where}: {what}") from exc
    except yaml.YAMLError as exc:
        raise _FileProblemError(f"invalid YAML: {exc}") from exc


def _confirm_rule(data: Mapping[str, Any]) -> ConfirmRule:
    # Read from the YAML the adapter was built from, so every tool type gets it alike.
    recipes = data.get("recipes") if isinstance(data.get("recipes"), dict) else {}
    marked = frozenset(
        name
        for name, entry in (recipes or {}).items()
        if isinstance(entry, dict) and entry.get("confirm") is True
    )
    return ConfirmRule(tool=data.get("confirm") is True, callables=marked)


def _load_tool_file_with_rule(path: Path) -> tuple[ToolAdapter, ConfirmRule]:
    data = _read_yaml(path)
    if data is None:
        raise _FileProblemError(
            "file is empty; expected a mapping with at least `name` and `command`"
        )
    if not isinstance(data, dict):
        raise _FileProblemError(
            f"the top level is a {type(data).__name__}, expected a mapping of fields "
            "(name, description, type, command, ...)"
        )
    tool_type = data.get("type", "cli")
    if not isinstance(tool_type, str) or tool_type not in TOOL_LOADERS:
        raise _FileProblemError(
            f"type: unknown tool type {tool_type!r}; expected one of: {', '.join(TOOL_LOADERS)}"
        )
    try:
        tool = _resolve_loader(tool_type)(data, path)
    except ValidationError as exc:
        raise _FileProblemError(describe_validation_error(exc)) from exc
    except PyCodeModeError as exc:
        raise _FileProblemError(str(exc)) from exc
    tags = data.get("tags")
    if isinstance(tags, list) and tags:
        # Validated as a list of strings by the file's model; kept for listing and search.
        setattr(tool, "tags", tuple(str(t) for t in tags))  # noqa: B010
    return tool, _confirm_rule(data)


def load_tool_directory(directory: Path) -> tuple[list[ToolAdapter], list[ToolLoadProblem]]:
    """Load every ``*.yaml``/``*.yml`` file of ``directory`` (not recursive), by file name.

    See :func:`load_tool_directory_with_rules`, which also gives the ``confirm`` marks.
    """
    tools, problems, _ = load_tool_directory_with_rules(directory)
    return tools, problems


def load_tool_directory_with_rules(
    directory: Path,
) -> tuple[list[ToolAdapter], list[ToolLoadProblem], dict[str, ConfirmRule]]:
    """Load every ``*.yaml``/``*.yml`` file of ``directory`` (not recursive), by file name.

    Blocking (file I/O, parsing): call it off the event loop. A missing folder
    gives no tools and no problems. When two files declare the same tool name,
    the one later in file-name order is a problem.

    Raises:
        ConfigError: ``directory`` exists but is not a folder.
    """
    directory = directory.expanduser()
    if not directory.exists():
        return [], [], {}
    if not directory.is_dir():
        raise ConfigError(
            f"tools path {directory} is a file; expected a folder of *.yaml tool files"
        )
    files = sorted(
        p
        for p in directory.iterdir()
        if p.suffix in TOOL_FILE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    tools: list[ToolAdapter] = []
    problems: list[ToolLoadProblem] = []
    rules: dict[str, ConfirmRule] = {}
    defined_in: dict[str, Path] = {}
    for path in files:
        try:
            tool, rule = _load_tool_file_with_rule(path)
        except _FileProblemError as exc:
            problems.append(ToolLoadProblem(path=str(path), message=str(exc)))
            continue
        if tool.name in defined_in:
            problems.append(
                ToolLoadProblem(
                    path=str(path),
                    message=(
                        f"name: tool {tool.name!r} is already defined in "
                        f"{defined_in[tool.name]}; tool names must be unique"
                    ),
                )
            )
            continue
        defined_in[tool.name] = path
        tools.append(tool)
        if rule:
            rules[tool.name] = rule
    return tools, problems, rules


class ToolRegistry:
    """The tools an executor offers to agent code, by name.

    Args:
        tools: Loaded adapters; names must be unique.
        problems: Files that could not be loaded, kept for reporting.
        confirm: Tool name -> what its YAML marks ``confirm: true``.

    Raises:
        ConfigError: Two adapters share a name.
    """

    def __init__(
        self,
        tools: Iterable[ToolAdapter] = (),
        problems: Iterable[ToolLoadProblem] = (),
        confirm: Mapping[str, ConfirmRule] | None = None,
    ) -> None:
        self._confirm = dict(confirm or {})
        self._tools: dict[str, ToolAdapter] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ConfigError(f"two tools are named {tool.name!r}; tool names must be unique")
            self._tools[tool.name] = tool
        self._problems = list(problems)

    @classmethod
    async def from_directory(cls, path: Path | str | None) -> ToolRegistry:
        """Load the tool files of a folder; None or a missing folder gives an empty registry.

        Raises:
            ConfigError: ``path`` exists but is not a folder.
        """
        if path is None:
            return cls()
        directory = Path(path)
        tools, problems, rules = await asyncio.to_thread(load_tool_directory_with_rules, directory)
        for problem in problems:
            logger.warning("tool file not loaded: %s", problem)
        logger.debug("loaded %d tool(s) from %s", len(tools), directory)
        return cls(tools, problems, rules)

    def __repr__(self) -> str:
        return f"ToolRegistry(tools={self.names()!r}, problems={len(self._problems)})"

    @property
    def problems(self) -> list[ToolLoadProblem]:
        """Files that could not be loaded (each names the file, the field and why)."""
        return list(self._problems)

    def confirm_reason(self, tool: str, callable_name: str | None) -> str | None:
        """Why a call must be approved first (its YAML's ``confirm: true``), or ``None``."""
        rule = self._confirm.get(tool)
        if rule is None:
            return None
        if rule.tool:
            return f"tool {tool!r} is marked confirm: true in its YAML"
        if callable_name in rule.callables:
            return f"recipe {callable_name!r} of tool {tool!r} is marked confirm: true in its YAML"
        return None

    def names(self) -> list[str]:
        """Tool names, sorted."""
        return sorted(self._tools)

    def get(self, name: str) -> ToolAdapter:
        """The tool called ``name``.

        Raises:
            ToolNotFoundError: No such tool; the message lists the available ones.
        """
        tool = self._tools.get(name) if isinstance(name, str) else None
        if tool is None:
            available = ", ".join(self.names()) or "none"
            broken = "".join(f"; {p.path} failed to load: {p.message}" for p in self._problems[:5])
            raise ToolNotFoundError(
                f"no tool named {name!r}; available: {available}{broken}", tool=str(name)
            )
        return tool

    async def list(self) -> builtins.list[dict[str, Any]]:
        """Every tool as ``{name, description, kind, callables, [parameters]}``, by name.

        ``parameters`` (the shape of a callable's) is present for tools that can
        be called themselves, like CLI tools: ``tools.curl(url=...)``. A tool whose
        callables cannot be listed (an unreachable server) still appears, with
        no callables and an ``error`` text.
        """
        return list(await asyncio.gather(*(self._describe(self._tools[n]) for n in self.names())))

    async def call(self, tool: str, callable_name: str | None, args: Mapping[str, Any]) -> Any:
        """Call ``tools.<tool>.<callable_name>(**args)`` (``None``: the tool itself).

        Raises:
            ToolNotFoundError: No such tool or callable.
            ToolError: The call failed (arguments, exit code, timeout, remote error).
        """
        return await self.get(tool).call(callable_name, args)

    async def aclose(self) -> None:
        """Close every tool (connections, running processes). Idempotent."""
        results = await asyncio.gather(
            *(tool.aclose() for tool in self._tools.values()), return_exceptions=True
        )
        for tool, result in zip(self._tools.values(), results, strict=True):
            if isinstance(result, Exception):
                logger.warning("closing tool %r failed: %s", tool.name, result)

    @staticmethod
    async def _describe(tool: ToolAdapter) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": tool.name,
            "description": tool.description,
            "kind": tool.kind,
        }
        tags = getattr(tool, "tags", ())
        if tags:
            entry["tags"] = list(tags)
        try:
            entry["callables"] = [spec.to_dict() for spec in await tool.callables()]
        except PyCodeModeError as exc:
            logger.warning("cannot list the callables of tool %r: %s", tool.name, exc)
            entry["callables"] = []
            entry["error"] = str(exc)
        if isinstance(tool, DirectlyCallable):
            direct = CallableSpec(name=tool.name, parameters=tool.direct_parameters())
            entry["parameters"] = direct.to_dict()["parameters"]
        if unsafe := getattr(tool, "unsafe", None):
            entry["unsafe"] = unsafe
        return entry


def _parameter_text(parameters: Mapping[str, Mapping[str, Any]]) -> str:
    return " ".join(f"{name} {spec.get('description', '')}" for name, spec in parameters.items())


def tool_search_document(entry: Mapping[str, Any]) -> SearchDocument:
    """What search matches a tool on: its name, callables, descriptions, parameters."""
    callables = entry.get("callables", [])
    return SearchDocument(
        id=entry["name"],
        fields={
            "name": entry["name"],
            "callables": " ".join(c["name"] for c in callables),
            "description": " ".join(
                [
                    entry.get("description", ""),
                    *entry.get("tags", ()),
                    *(c.get("description", "") for c in callables),
                ]
            ),
            "parameters": " ".join(
                [
                    _parameter_text(entry.get("parameters", {})),
                    *(_parameter_text(c.get("parameters", {})) for c in callables),
                ]
            ),
        },
    )
