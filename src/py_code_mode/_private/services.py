"""The host side of a session: what its commands run against, and their dispatch.

Agent code (through the worker's host channel), the :class:`~py_code_mode.Session`
facade, the MCP server and the CLI all reach the host through :meth:`HostServices.call`
or :meth:`HostServices.dispatch`, which look the operation up in the one command table
(:mod:`py_code_mode._private.commands`). Everything here runs on the host, next to the
credentials that must never reach the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from py_code_mode._private.commands import COMMANDS, Command
from py_code_mode.approval import Approvals
from py_code_mode.errors import ExecutorError, PyCodeModeError
from py_code_mode.execution.protocol import Executor, PackageEnvironment
from py_code_mode.quotas import Quotas

if TYPE_CHECKING:
    from py_code_mode.search.protocol import Ranker
    from py_code_mode.storage.protocol import StorageBackend
    from py_code_mode.tools.registry import ToolRegistry

__all__ = ["HostServices"]


@dataclass
class HostServices:
    """The capabilities a session offers to agent code and to its adapters.

    Attributes:
        storage: Where workflows, artifacts and the deps list live.
        tools: Loaded tool registry.
        environment: Where ``deps`` installs packages: the executor, or ``None``.
        ranker: Ranks search results.
        allow_runtime_deps: Whether ``deps.add``/``remove`` may change the environment.
        quotas: Limits on what commands store and accept (checked by the commands).
        approvals: Who approves tool calls marked ``confirm`` (checked by ``tools.call``).
    """

    storage: StorageBackend
    tools: ToolRegistry
    environment: PackageEnvironment | None
    ranker: Ranker
    allow_runtime_deps: bool = True
    quotas: Quotas = field(default_factory=Quotas)
    approvals: Approvals = field(default_factory=Approvals)
    deps_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _executor: Executor | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def executor(self) -> Executor:
        """The executor of the session, for commands that run code.

        The protocol check is done once per environment: ``isinstance`` against a
        runtime-checkable protocol reads every member, properties included, and this
        runs on every ``run``.
        """
        if self._executor is None or self._executor is not self.environment:
            if not isinstance(self.environment, Executor):
                raise ExecutorError("this host has no executor to run code")
            self._executor = self.environment
        return self._executor

    def command(self, name: str) -> Command[Any]:
        """The table entry ``name``."""
        return COMMANDS[name]

    async def call(self, name: str, /, **params: Any) -> Any:
        """Run command ``name`` of the table with ``params``, validated once.

        Raises:
            PyCodeModeError: Bad arguments (one line per mistake) or the call failed.
        """
        return await COMMANDS[name](self, params)

    async def dispatch(self, method: str, params: Mapping[str, Any]) -> Any:
        """Serve one namespace call from agent code: only commands agents may call.

        Raises:
            PyCodeModeError: Unknown method, bad parameters, or the call failed.
        """
        command = COMMANDS.get(method) if isinstance(method, str) else None
        if command is None or not command.agent:
            raise PyCodeModeError(f"unknown host method {method!r}")
        if not isinstance(params, Mapping):
            raise PyCodeModeError(f"{method}: parameters must be a JSON object")
        return await command(self, params)
