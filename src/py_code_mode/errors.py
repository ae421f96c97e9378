"""Exceptions raised by py-code-mode on the host side.

Every exception the library raises derives from :class:`PyCodeModeError`, so callers
can catch one root. Third-party errors (redis, docker, OS) are translated at the
boundary with ``raise ... from exc`` so the original stays available as ``__cause__``.

Errors in *agent* code are never raised through the library: they come back as data
in :class:`~py_code_mode.ExecutionResult`.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ArtifactNotFoundError",
    "ConfigError",
    "DependencyError",
    "ExecutorError",
    "InvalidNameError",
    "PyCodeModeError",
    "SessionClosedError",
    "StorageError",
    "ToolError",
    "ToolNotFoundError",
    "WorkflowError",
    "WorkflowNotFoundError",
]


class PyCodeModeError(Exception):
    """Root of every error raised by py-code-mode."""


class ConfigError(PyCodeModeError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class InvalidNameError(PyCodeModeError, ValueError):
    """A workflow or artifact name is not acceptable (unsafe path, keyword, clash)."""


class SessionClosedError(PyCodeModeError, RuntimeError):
    """The session was closed; create a new one to keep working."""


class StorageError(PyCodeModeError):
    """The storage backend failed to read or write (disk, Redis connection, size limit)."""


class ArtifactError(PyCodeModeError):
    """An artifact could not be saved or loaded."""


class ArtifactNotFoundError(ArtifactError, KeyError):
    """No artifact exists under the given name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class WorkflowError(PyCodeModeError):
    """A workflow is invalid (syntax, missing ``run``) or failed."""


class WorkflowNotFoundError(WorkflowError, KeyError):
    """No workflow exists under the given name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ToolError(PyCodeModeError):
    """A tool failed: non-zero exit, timeout, bad arguments or a remote error.

    Attributes:
        tool: Name of the tool.
        stderr: Captured error output of the tool, when there is any.
    """

    def __init__(self, message: str, *, tool: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.tool = tool
        self.stderr = stderr


class ToolNotFoundError(ToolError, LookupError):
    """No tool (or no callable of a tool) exists under the given name."""


class DependencyError(PyCodeModeError):
    """A package spec is invalid, runtime deps are disabled, or installation failed."""


class ExecutorError(PyCodeModeError):
    """The executor could not start or lost its worker in a way it could not recover."""
