"""The public facade: a storage backend paired with an executor."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from py_code_mode._private.code_limit import check_code_size
from py_code_mode.errors import ConfigError, SessionClosedError
from py_code_mode.execution.protocol import Executor
from py_code_mode.result import ExecutionResult
from py_code_mode.storage.protocol import StorageBackend

if TYPE_CHECKING:
    from typing import Self

    from py_code_mode._private.services import HostServices
    from py_code_mode.search.protocol import Ranker

__all__ = ["ExecutorKind", "Session"]

logger = logging.getLogger(__name__)

ExecutorKind = Literal["subprocess", "in-process", "container"]


class Session:
    """A persistent Python environment for an agent.

    Pairs a storage backend (workflows, artifacts, deps list, search caches) with an
    executor (where code runs). Variables persist between :meth:`run` calls until
    :meth:`reset`. Use it as an async context manager, or call :meth:`start` and
    :meth:`close` (both idempotent); the first call that needs the session starts it.

    Args:
        storage: A backend such as ``FileStorage(base_path=...)`` or
            ``RedisStorage(url=...)``.
        executor: Where code runs; a :class:`SubprocessExecutor` with default settings
            when omitted.
        ranker: How search ranks results. When omitted,
            :func:`~py_code_mode.search.semantic.default_ranker`: by meaning and
            words when an embedding model loads, lexically otherwise.

    Raises:
        ConfigError: ``storage`` or ``executor`` is missing or of the wrong type.
    """

    def __init__(
        self,
        storage: StorageBackend,
        executor: Executor | None = None,
        *,
        ranker: Ranker | None = None,
    ) -> None:
        if storage is None or not isinstance(storage, StorageBackend):
            raise ConfigError(
                "Session(storage=...) needs a storage backend, e.g. "
                "FileStorage(base_path=Path('./data')) or RedisStorage(url='redis://...'); "
                f"got {type(storage).__name__}"
            )
        if executor is None:
            from py_code_mode.execution.subprocess import SubprocessExecutor

            executor = SubprocessExecutor()
        elif not isinstance(executor, Executor):
            raise ConfigError(
                "Session(executor=...) needs an executor such as "
                "SubprocessExecutor(SubprocessConfig(...)) or InProcessExecutor(); "
                f"got {type(executor).__name__}"
            )
        self.storage = storage
        self.executor = executor
        self._ranker = ranker
        self._host: HostServices | None = None
        self._state: Literal["new", "started", "closed"] = "new"
        self._start_lock = asyncio.Lock()

    # -- construction shortcuts ------------------------------------------------------
    @classmethod
    def from_base(
        cls,
        base: str | Path,
        *,
        executor: ExecutorKind = "subprocess",
        **config: Any,
    ) -> Session:
        """A session on one directory with FileStorage and discovered settings.

        Discovers ``{base}/tools`` (tool YAML), ``{base}/workflows``,
        ``{base}/artifacts`` and ``{base}/requirements.txt``; the directory is created
        when missing.

        Args:
            base: The directory.
            executor: ``"subprocess"`` (the default), ``"in-process"`` or ``"container"``.
            **config: Extra fields for the executor's config class.
        """
        from py_code_mode.storage.file import FileStorage

        base_path = Path(base).expanduser()
        tools = base_path / "tools"
        settings: dict[str, Any] = {"tools_path": tools if tools.is_dir() else None, **config}
        return cls(storage=FileStorage(base_path), executor=_make_executor(executor, settings))

    @classmethod
    def inprocess(cls, base: str | Path, **config: Any) -> Session:
        """:meth:`from_base` with the in-process executor."""
        return cls.from_base(base, executor="in-process", **config)

    @classmethod
    def subprocess(cls, base: str | Path, **config: Any) -> Session:
        """:meth:`from_base` with the subprocess executor."""
        return cls.from_base(base, executor="subprocess", **config)

    @classmethod
    def container(cls, base: str | Path, **config: Any) -> Session:
        """:meth:`from_base` with the container executor."""
        return cls.from_base(base, executor="container", **config)

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Open storage, load tools and start the executor. Idempotent.

        Library calls (listing or editing workflows and artifacts, searching) need
        only storage and tools, so they never wait for the executor; running code and
        changing packages start it.

        Raises:
            SessionClosedError: The session was closed.
        """
        await self._started()

    async def _library(self) -> HostServices:
        """Storage opened and tools loaded; the executor may not be started yet."""
        if self._host is not None and self._state != "closed":
            return self._host
        async with self._start_lock:
            if self._state == "closed":
                raise SessionClosedError("this session is closed; create a new Session")
            if self._host is None:
                from py_code_mode._private.services import HostServices
                from py_code_mode.tools.registry import ToolRegistry

                await self.storage.open()
                tools = await ToolRegistry.from_directory(self.executor.tools_path)
                self._host = HostServices(
                    storage=self.storage,
                    tools=tools,
                    environment=self.executor,
                    allow_runtime_deps=self.executor.allow_runtime_deps,
                    ranker=self._ranker,
                )
            return self._host

    async def _started(self) -> HostServices:
        """Everything started, the executor included."""
        if self._state == "started":
            assert self._host is not None
            return self._host
        host = await self._library()
        async with self._start_lock:
            state: str = self._state  # another task may have started or closed it meanwhile
            if state == "closed":
                raise SessionClosedError("this session is closed; create a new Session")
            if state == "new":
                await self.executor.start(host)
                if self._state == "new":  # close() may have been called while starting
                    self._state = "started"
        return host

    async def close(self) -> None:
        """Stop the executor and release tools and storage. Idempotent."""
        if self._state == "closed":
            return
        self._state = "closed"
        async with self._start_lock:  # let a start in progress finish first
            try:
                await self.executor.close()
            finally:
                if self._host is not None:
                    await self._host.tools.aclose()
                await self.storage.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._state == "closed"

    # -- running code ----------------------------------------------------------------
    async def run(self, code: str, timeout: float | None = None) -> ExecutionResult:
        """Run agent code; errors in it come back in the result, never raised.

        Args:
            code: Python source; a trailing expression's value becomes ``value``.
            timeout: Seconds before the run is interrupted; the executor's default
                when omitted.

        Returns:
            The result. After :meth:`close` it is a failed result with
            ``error_type == "SessionClosedError"``.
        """
        if not isinstance(code, str):
            raise TypeError(f"code must be a str of Python source, got {type(code).__name__}")
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if self._state == "closed":
            return ExecutionResult.failure(
                "SessionClosedError: this session is closed; create a new Session to run code.",
                "SessionClosedError",
            )
        if (too_large := check_code_size(code)) is not None:
            return too_large
        started = time.perf_counter()
        try:
            await self.start()
        except Exception as exc:
            logger.exception("session failed to start")
            return ExecutionResult.failure(
                f"{type(exc).__name__}: the session could not start: {exc}",
                type(exc).__name__,
                execution_time_ms=(time.perf_counter() - started) * 1000,
            )
        return await self.executor.run(code, timeout=timeout)

    async def reset(self) -> None:
        """Clear the agent's variables; storage (workflows, artifacts, deps) is kept."""
        await self._started()
        await self.executor.reset()

    # -- facade: tools ----------------------------------------------------------------
    async def list_tools(self) -> list[dict[str, Any]]:
        """Every tool with its description and callables."""
        return await (await self._library()).tools_list()

    async def search_tools(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        """Tools ranked for ``query``, best first, with ``score`` and ``why``."""
        return await (await self._library()).tools_search(query, limit)

    # -- facade: workflows ------------------------------------------------------------
    async def list_workflows(self) -> list[dict[str, Any]]:
        """All workflows (name, description, parameters; no source)."""
        return await (await self._library()).workflows_list()

    async def search_workflows(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """Workflows ranked for ``query``, best first, with ``score`` and ``why``."""
        return await (await self._library()).workflows_search(query, limit)

    async def get_workflow(self, name: str) -> dict[str, Any] | None:
        """One workflow including its source, or ``None`` when absent."""
        from py_code_mode.errors import WorkflowNotFoundError

        try:
            return await (await self._library()).workflows_get(name)
        except WorkflowNotFoundError:
            return None

    async def add_workflow(
        self,
        name: str,
        source: str,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Validate and save a workflow; replaces one of the same name.

        Raises:
            InvalidNameError: The name is not usable.
            WorkflowError: Syntax error or no ``run`` function; nothing is stored.
        """
        return await (await self._library()).workflows_create(name, source, description, metadata)

    async def remove_workflow(self, name: str) -> bool:
        """Delete a workflow; ``False`` when it did not exist."""
        return await (await self._library()).workflows_delete(name)

    # -- facade: artifacts ------------------------------------------------------------
    async def list_artifacts(self) -> list[dict[str, Any]]:
        """Index entries of all artifacts."""
        return await (await self._library()).artifacts_list()

    async def save_artifact(
        self,
        name: str,
        data: Any,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store str, bytes or JSON data under ``name``; returns its index entry."""
        return await (await self._library()).artifacts_save(name, data, description, metadata)

    async def load_artifact(self, name: str) -> Any:
        """The stored value, of the type it was saved with.

        Raises:
            ArtifactNotFoundError: No artifact of that name.
        """
        return await (await self._library()).artifacts_load(name)

    async def delete_artifact(self, name: str) -> bool:
        """Delete an artifact; ``False`` when it did not exist."""
        return await (await self._library()).artifacts_delete(name)

    # -- facade: deps -----------------------------------------------------------------
    async def list_deps(self) -> list[str]:
        """The persisted requirement specs."""
        return await (await self._library()).deps_list()

    async def add_dep(self, spec: str) -> dict[str, Any]:
        """Install a package and persist its spec.

        Raises:
            DependencyError: Invalid spec, runtime deps disabled, or install failed.
        """
        return await (await self._started()).deps_add(spec)

    async def remove_dep(self, spec: str) -> bool:
        """Uninstall a package and drop its spec; ``False`` if it was not listed."""
        return await (await self._started()).deps_remove(spec)

    async def sync_deps(self) -> dict[str, Any]:
        """Install every persisted spec into the execution environment."""
        return await (await self._started()).deps_sync()

    def __repr__(self) -> str:
        return (
            f"<Session {self._state} storage={type(self.storage).__name__} "
            f"executor={type(self.executor).__name__}>"
        )


_EXECUTOR_FACTORIES: dict[str, tuple[str, str, str]] = {
    "in-process": ("py_code_mode.execution.in_process", "InProcessExecutor", "InProcessConfig"),
    "subprocess": ("py_code_mode.execution.subprocess", "SubprocessExecutor", "SubprocessConfig"),
    "container": ("py_code_mode.execution.container", "ContainerExecutor", "ContainerConfig"),
}


def _make_executor(kind: str, settings: dict[str, Any]) -> Executor:
    import importlib

    try:
        module_name, executor_name, config_name = _EXECUTOR_FACTORIES[kind]
    except KeyError:
        raise ConfigError(
            f"unknown executor {kind!r}; choose one of {', '.join(_EXECUTOR_FACTORIES)}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"the {kind} executor is not available: {exc}") from exc
    config_cls = getattr(module, config_name)
    try:
        config = config_cls(**settings)
    except TypeError as exc:
        raise ConfigError(f"{config_name}: {exc}") from None
    executor: Executor = getattr(module, executor_name)(config)
    return executor
