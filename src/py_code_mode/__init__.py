"""py-code-mode: a persistent, sandboxable Python environment for AI agents.

Agent code runs against four namespaces: ``tools`` (CLI, MCP and HTTP tools declared
in YAML), ``workflows`` (a searchable library of reusable recipes), ``artifacts``
(persistent data) and ``deps`` (packages of the execution environment). A
:class:`Session` pairs a storage backend with an executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from py_code_mode._version import __version__
from py_code_mode.approval import ApprovalRequest
from py_code_mode.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    ArtifactQuotaError,
    ConfigError,
    DependencyError,
    ExecutorError,
    HostError,
    InvalidNameError,
    PyCodeModeError,
    QuotaExceededError,
    SessionClosedError,
    StorageError,
    ToolDeniedError,
    ToolError,
    ToolNotFoundError,
    WorkflowError,
    WorkflowNotFoundError,
    WorkflowQuotaError,
)
from py_code_mode.result import ExecutionResult
from py_code_mode.session import Session
from py_code_mode.storage.file import FileStorage

if TYPE_CHECKING:
    from py_code_mode.quotas import Quotas
    from py_code_mode.storage.redis import RedisStorage

__all__ = [
    "ApprovalRequest",
    "ArtifactError",
    "ArtifactNotFoundError",
    "ArtifactQuotaError",
    "ConfigError",
    "DependencyError",
    "ExecutionResult",
    "ExecutorError",
    "FileStorage",
    "HostError",
    "InvalidNameError",
    "PyCodeModeError",
    "QuotaExceededError",
    "Quotas",
    "RedisStorage",
    "Session",
    "SessionClosedError",
    "StorageError",
    "ToolDeniedError",
    "ToolError",
    "ToolNotFoundError",
    "WorkflowError",
    "WorkflowNotFoundError",
    "WorkflowQuotaError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # RedisStorage imports redis-py, which is an optional extra and slow to import.
    if name == "RedisStorage":
        from py_code_mode.storage.redis import RedisStorage

        return RedisStorage
    if name == "Quotas":  # a pydantic model: pydantic loads only when it is used
        from py_code_mode.quotas import Quotas

        return Quotas
    raise AttributeError(f"module 'py_code_mode' has no attribute {name!r}")
