"""Exceptions raised by py-code-mode.

Every exception the library raises derives from :class:`PyCodeModeError`. The tree is
defined once, in the stdlib-only worker package (:mod:`py_code_mode.worker.errors`,
where its hierarchy is drawn), so a failure is the same class with the same bases
whether it surfaces from :class:`~py_code_mode.Session`, inside agent code, over MCP
or in the CLI. Third-party errors are translated at the boundary with
``raise ... from exc``, keeping the original as ``__cause__``.

Errors in *agent* code are never raised through the library: they come back as data
in :class:`~py_code_mode.ExecutionResult`.
"""

from __future__ import annotations

from py_code_mode.worker.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    ConfigError,
    DependencyError,
    ExecutorError,
    HostError,
    InvalidNameError,
    PyCodeModeError,
    SessionClosedError,
    StorageError,
    ToolError,
    ToolNotFoundError,
    WorkflowError,
    WorkflowNotFoundError,
    translate,
)

__all__ = [
    "ArtifactError",
    "ArtifactNotFoundError",
    "ConfigError",
    "DependencyError",
    "ExecutorError",
    "HostError",
    "InvalidNameError",
    "PyCodeModeError",
    "SessionClosedError",
    "StorageError",
    "ToolError",
    "ToolNotFoundError",
    "WorkflowError",
    "WorkflowNotFoundError",
    "translate",
]
