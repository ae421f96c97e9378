"""py-code-mode: a persistent, sandboxable Python environment for AI agents.

Agent code runs against four namespaces: ``tools`` (CLI, MCP and HTTP tools declared
in YAML), ``workflows`` (a searchable library of reusable recipes), ``artifacts``
(persistent data) and ``deps`` (packages of the execution environment). A
:class:`Session` pairs a storage backend with an executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from py_code_mode._version import __version__
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

if TYPE_CHECKING:
    from py_code_mode.approval import ApprovalRequest
    from py_code_mode.quotas import Quotas
    from py_code_mode.result import ExecutionResult
    from py_code_mode.session import Session
    from py_code_mode.storage.file import FileStorage
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


# Imported on first use: ``import py_code_mode`` (a CLI's ``--help``, an MCP server
# answering ``initialize``) should not pay for asyncio, the executors or redis-py.
_LAZY = {
    "ApprovalRequest": "py_code_mode.approval",
    "ExecutionResult": "py_code_mode.result",
    "FileStorage": "py_code_mode.storage.file",
    "Quotas": "py_code_mode.quotas",  # a pydantic model: pydantic loads when it is used
    "RedisStorage": "py_code_mode.storage.redis",  # redis-py is an optional extra
    "Session": "py_code_mode.session",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'py_code_mode' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
