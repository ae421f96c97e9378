"""Exceptions agent code sees when a namespace call fails.

The host raises its own errors (``py_code_mode.errors``); they cross to the worker
as a payload ``{"type", "message", ...}`` and are re-raised here under the same
class name, so ``except ToolError`` reads the same in every executor.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ERROR_TYPES",
    "ArtifactError",
    "ArtifactNotFoundError",
    "DependencyError",
    "HostError",
    "InvalidNameError",
    "NamespaceError",
    "RunInterrupted",
    "StorageError",
    "ToolError",
    "ToolNotFoundError",
    "WorkflowError",
    "WorkflowNotFoundError",
    "error_from_payload",
    "namespace_error_type",
]


class NamespaceError(Exception):
    """Base of errors raised by ``tools``, ``workflows``, ``artifacts`` and ``deps``."""


class HostError(NamespaceError):
    """The host failed in a way that has no more specific class."""


class StorageError(NamespaceError):
    """The storage backend failed."""


class InvalidNameError(NamespaceError, ValueError):
    """A workflow or artifact name is not acceptable."""


class ToolError(NamespaceError):
    """A tool failed; ``stderr`` holds its error output when there is any."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class ToolNotFoundError(ToolError, AttributeError):
    """No such tool or tool callable."""


class WorkflowError(NamespaceError):
    """A workflow is invalid or failed."""


class WorkflowNotFoundError(WorkflowError, AttributeError):
    """No such workflow."""


class ArtifactError(NamespaceError):
    """An artifact could not be saved or loaded."""


class ArtifactNotFoundError(ArtifactError, KeyError):
    """No artifact of that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DependencyError(NamespaceError):
    """A package spec was refused or could not be installed."""


class RunInterrupted(BaseException):
    """Raised inside a run to stop it (timeout); not catchable by ``except Exception``."""


ERROR_TYPES: dict[str, type[NamespaceError]] = {
    cls.__name__: cls
    for cls in (
        HostError,
        StorageError,
        InvalidNameError,
        ToolError,
        ToolNotFoundError,
        WorkflowError,
        WorkflowNotFoundError,
        ArtifactError,
        ArtifactNotFoundError,
        DependencyError,
    )
}
for _cls in ERROR_TYPES.values():
    # Tracebacks shown to agents then read "ToolError: ..." instead of a module path
    # that differs between executors.
    _cls.__module__ = "builtins"

_ALIASES = {"ConfigError": "HostError", "ExecutorError": "HostError"}


_NAMESPACE_ERRORS = {
    "tools": "ToolError",
    "workflows": "WorkflowError",
    "artifacts": "ArtifactError",
    "deps": "DependencyError",
}


def namespace_error_type(method: str) -> str:
    """Name of the error class for a failed host call ``method`` (``"tools.call"``, ...)."""
    return _NAMESPACE_ERRORS.get(method.split(".", 1)[0], "HostError")


def error_from_payload(payload: dict[str, Any]) -> NamespaceError:
    """Rebuild an agent-facing exception from a host error payload."""
    name = str(payload.get("type", "HostError"))
    cls = ERROR_TYPES.get(_ALIASES.get(name, name), HostError)
    message = str(payload.get("message", "host call failed"))
    if issubclass(cls, ToolError):
        return cls(message, str(payload.get("stderr", "")))
    return cls(message)
