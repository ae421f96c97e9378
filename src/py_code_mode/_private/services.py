"""Host capabilities behind the namespaces: tools, workflows, artifacts, deps.

Both the :class:`~py_code_mode.Session` facade and agent code (through the worker's
host channel) end up here, which is why results are the same plain data whichever
executor runs the code. Everything here runs on the host, next to the credentials
that must never reach the worker.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from py_code_mode._private.names import validate_artifact_name, validate_workflow_name
from py_code_mode._private.requirements import dependency_name, validate_requirement
from py_code_mode._private.workflow_source import analyze_workflow
from py_code_mode.errors import (
    DependencyError,
    PyCodeModeError,
    ToolError,
    WorkflowError,
    WorkflowNotFoundError,
)
from py_code_mode.models import WorkflowRecord

if TYPE_CHECKING:
    from py_code_mode.execution.protocol import PackageEnvironment
    from py_code_mode.search.protocol import Ranker, SearchDocument
    from py_code_mode.storage.protocol import StorageBackend
    from py_code_mode.tools.registry import ToolRegistry

__all__ = ["HostServices", "error_payload"]

logger = logging.getLogger(__name__)

_MAX_SEARCH_LIMIT = 100
_SOURCE_CHARS_FOR_SEARCH = 2_000


def error_payload(exc: BaseException) -> dict[str, Any]:
    """Describe a host-side failure as JSON for the worker to re-raise.

    Library errors keep their class name and message; anything else is a bug on the
    host, logged here with its traceback and reported to the agent without internals.
    """
    if isinstance(exc, PyCodeModeError):
        payload: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, ToolError) and exc.stderr:
            payload["stderr"] = exc.stderr
        return payload
    logger.error("host service failed", exc_info=exc)
    return {"type": "HostError", "message": f"internal error on the host: {type(exc).__name__}"}


def _require_str(value: Any, what: str, error: type[PyCodeModeError]) -> str:
    if not isinstance(value, str):
        raise error(f"{what} must be a string, got {type(value).__name__}")
    return value


def _limit(limit: Any, default: int) -> int:
    if limit is None:
        return default
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise PyCodeModeError(f"limit must be a positive integer, got {limit!r}")
    return min(limit, _MAX_SEARCH_LIMIT)


class HostServices:
    """The capabilities a session offers to agent code and to its facade.

    Args:
        storage: Where workflows, artifacts and the deps list live.
        tools: Loaded tool registry.
        environment: Where ``deps`` installs packages (the executor).
        allow_runtime_deps: Whether ``deps.add``/``remove`` may change the environment.
        ranker: Ranks search results; when omitted, by meaning and words
            (:func:`~py_code_mode.search.semantic.default_ranker`, embeddings cached
            in ``storage``), lexically until or unless a model loads.
    """

    def __init__(
        self,
        *,
        storage: StorageBackend,
        tools: ToolRegistry,
        environment: PackageEnvironment | None,
        allow_runtime_deps: bool = True,
        ranker: Ranker | None = None,
    ) -> None:
        if ranker is None:
            from py_code_mode.search.semantic import default_ranker

            ranker = default_ranker(storage)
        self.storage = storage
        self.tools = tools
        self.environment = environment
        self.allow_runtime_deps = allow_runtime_deps
        self.ranker = ranker
        self._deps_lock = asyncio.Lock()
        self._handlers: dict[str, Callable[..., Awaitable[Any]]] = {
            name.replace("_", ".", 1): getattr(self, name)
            for name in dir(self)
            if name.split("_", 1)[0] in ("tools", "workflows", "artifacts", "deps")
            and callable(getattr(self, name))
        }
        self._signatures = {m: inspect.signature(h) for m, h in self._handlers.items()}

    async def dispatch(self, method: str, params: Mapping[str, Any]) -> Any:
        """Serve one namespace call from agent code.

        Raises:
            PyCodeModeError: Unknown method, bad parameters, or the call failed.
        """
        handler = self._handlers.get(method)
        if handler is None:
            raise PyCodeModeError(f"unknown host method {method!r}")
        try:
            self._signatures[method].bind(**params)
        except TypeError as exc:
            raise PyCodeModeError(f"{method}: {exc}") from None
        return await handler(**params)

    # -- tools -----------------------------------------------------------------------
    async def tools_list(self) -> list[dict[str, Any]]:
        """Every tool with its callables."""
        return await self.tools.list()

    async def tools_names(self) -> list[str]:
        """Names of all tools."""
        return self.tools.names()

    async def tools_search(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        """Tools ranked for ``query``, each with ``score`` and ``why``."""
        from py_code_mode.tools.registry import tool_search_document

        query = _require_str(query, "query", ToolError)
        entries = {entry["name"]: entry for entry in await self.tools.list()}
        docs = [tool_search_document(entry) for entry in entries.values()]
        hits = await self.ranker.rank(query, docs, limit=_limit(limit, 10))
        return [{**entries[h.id], "score": round(h.score, 4), "why": h.why} for h in hits]

    async def tools_call(
        self, tool: str, callable: str | None = None, args: Mapping[str, Any] | None = None
    ) -> Any:
        """Invoke a tool (``callable=None``) or one of its callables."""
        if not isinstance(tool, str) or (callable is not None and not isinstance(callable, str)):
            raise ToolError("tool and callable names must be strings")
        if args is not None and not isinstance(args, Mapping):
            raise ToolError(f"tool {tool!r}: arguments must be keyword arguments", tool=tool)
        return await self.tools.call(tool, callable, dict(args or {}))

    # -- workflows -------------------------------------------------------------------
    async def workflows_list(self) -> list[dict[str, Any]]:
        """All workflows without their source."""
        return [r.to_dict(include_source=False) for r in await self.storage.list_workflows()]

    async def workflows_search(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """Workflows ranked for ``query``, each with ``score`` and ``why``."""
        query = _require_str(query, "query", WorkflowError)
        records = {r.name: r for r in await self.storage.list_workflows()}
        docs = [_workflow_document(r) for r in records.values()]
        hits = await self.ranker.rank(query, docs, limit=_limit(limit, 5))
        return [
            {
                **records[h.id].to_dict(include_source=False),
                "score": round(h.score, 4),
                "why": h.why,
            }
            for h in hits
        ]

    async def workflows_get(self, name: str) -> dict[str, Any]:
        """One workflow with its source.

        Raises:
            WorkflowNotFoundError: No workflow of that name.
        """
        record = await self.storage.get_workflow(validate_workflow_name(name))
        if record is None:
            raise WorkflowNotFoundError(
                f"no workflow named {name!r}; workflows.list() shows what exists"
            )
        return record.to_dict()

    async def workflows_create(
        self,
        name: str,
        source: str,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Validate and store a workflow, replacing one of the same name."""
        if metadata is not None and not isinstance(metadata, Mapping):
            raise WorkflowError("metadata must be a dict of JSON data")
        record = analyze_workflow(name, source, description or "", metadata=metadata)
        await self.storage.save_workflow(record)
        # Read back: the backend keeps the first created_at of a replaced workflow. Not
        # read before saving, so a save can repair a broken hand-written file.
        stored = await self.storage.get_workflow(name)
        return (stored or record).to_dict(include_source=False)

    async def workflows_delete(self, name: str) -> bool:
        """Remove a workflow; ``False`` when it did not exist."""
        return await self.storage.delete_workflow(validate_workflow_name(name))

    # -- artifacts -------------------------------------------------------------------
    async def artifacts_save(
        self,
        name: str,
        data: Any,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store ``data`` (str, bytes or JSON) and return its index entry."""
        info = await self.storage.save_artifact(
            validate_artifact_name(name), data, description=description or "", metadata=metadata
        )
        return info.to_dict()

    async def artifacts_load(self, name: str) -> Any:
        """The stored value, of the type it was saved with."""
        return await self.storage.load_artifact(validate_artifact_name(name))

    async def artifacts_list(self) -> list[dict[str, Any]]:
        """Index entries of all artifacts."""
        return [info.to_dict() for info in await self.storage.list_artifacts()]

    async def artifacts_exists(self, name: str) -> bool:
        """True when the artifact exists."""
        return await self.storage.get_artifact_info(validate_artifact_name(name)) is not None

    async def artifacts_info(self, name: str) -> dict[str, Any] | None:
        """Index entry of one artifact, or ``None``."""
        info = await self.storage.get_artifact_info(validate_artifact_name(name))
        return None if info is None else info.to_dict()

    async def artifacts_delete(self, name: str) -> bool:
        """Remove an artifact; ``False`` when it did not exist."""
        return await self.storage.delete_artifact(validate_artifact_name(name))

    # -- deps ------------------------------------------------------------------------
    async def deps_list(self) -> list[str]:
        """The persisted requirement specs."""
        return await self.storage.list_deps()

    async def deps_add(self, spec: str) -> dict[str, Any]:
        """Install a package into the environment and persist its spec.

        Nothing is persisted when the install fails.
        """
        self._check_runtime_deps("add")
        spec = validate_requirement(spec)
        environment = self._require_environment()
        async with self._deps_lock:
            output = await environment.install([spec])
            await self.storage.add_dep(spec)
        return {"spec": spec, "installed": True, "output": _tail(output)}

    async def deps_remove(self, spec: str) -> bool:
        """Uninstall a package and drop it from the list; ``False`` if it was not listed."""
        self._check_runtime_deps("remove")
        name = dependency_name(validate_requirement(spec))
        environment = self._require_environment()
        async with self._deps_lock:
            listed = {dependency_name(s) for s in await self.storage.list_deps()}
            if name not in listed:
                return False
            await environment.uninstall([name])
            return await self.storage.remove_dep(name)

    async def deps_sync(self) -> dict[str, Any]:
        """Install every persisted spec into the environment."""
        environment = self._require_environment()
        specs = await self.storage.list_deps()
        if not specs:
            return {"installed": [], "output": ""}
        async with self._deps_lock:
            output = await environment.install(specs)
        return {"installed": specs, "output": _tail(output)}

    def _check_runtime_deps(self, action: str) -> None:
        if not self.allow_runtime_deps:
            raise DependencyError(
                f"deps.{action}() is disabled: this session does not allow runtime "
                "dependency changes (allow_runtime_deps=False). Add the package to the "
                "executor's deps or requirements file and restart the session."
            )

    def _require_environment(self) -> PackageEnvironment:
        if self.environment is None:
            raise DependencyError("this session has no package environment to install into")
        return self.environment


def _tail(text: str, limit: int = 2_000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def _workflow_document(record: WorkflowRecord) -> SearchDocument:
    from py_code_mode.search.lexical import SearchDocument

    params = " ".join(f"{p.name} {p.type}" for p in record.parameters)
    return SearchDocument(
        id=record.name,
        fields={
            "name": record.name,
            "description": record.description,
            "parameters": params,
            "source": record.source[:_SOURCE_CHARS_FOR_SEARCH],
        },
    )
