"""The one error tree of py-code-mode, shared by the host and the worker.

The host raises these classes from :class:`~py_code_mode.Session`, the MCP server and
the CLI; agent code sees the same classes (same names, same bases) when a namespace
call fails, because a host error crosses the wire as ``{"type", "message", ...}`` and
is rebuilt here by name. Standard library only: this module also runs, as part of the
copied worker package, in child processes and containers.

Hierarchy::

    PyCodeModeError
    ├── ConfigError                  (also ValueError)
    ├── InvalidNameError             (also ValueError)
    ├── SessionClosedError           (also RuntimeError)
    ├── ExecutorError
    ├── HostError                    an internal failure on the host, details logged there
    ├── StorageError
    ├── QuotaExceededError           .quota, .value, .limit: a write over a quota
    ├── ArtifactError
    │   ├── ArtifactNotFoundError    (also KeyError)
    │   └── ArtifactQuotaError       (also QuotaExceededError)
    ├── WorkflowError
    │   ├── WorkflowNotFoundError    (also KeyError and AttributeError)
    │   └── WorkflowQuotaError       (also QuotaExceededError)
    ├── ToolError                    .tool, .stderr
    │   ├── ToolNotFoundError        (also LookupError and AttributeError)
    │   └── ToolDeniedError          a call that needed approval was not approved
    └── DependencyError

    RunInterrupted (BaseException)   stops a run on timeout; not an Exception

The not-found classes are also ``AttributeError`` because agent code meets them as
attributes (``tools.nope``, ``workflows.nope``): ``hasattr`` must answer ``False``.
Third-party failures are translated once, by :data:`TRANSLATIONS`, keeping the
original as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ERROR_TYPES",
    "TRANSLATIONS",
    "ArtifactError",
    "ArtifactNotFoundError",
    "ArtifactQuotaError",
    "ConfigError",
    "DependencyError",
    "ExecutorError",
    "HostError",
    "InvalidNameError",
    "PyCodeModeError",
    "QuotaExceededError",
    "RunInterrupted",
    "SessionClosedError",
    "StorageError",
    "ToolDeniedError",
    "ToolError",
    "ToolNotFoundError",
    "WorkflowError",
    "WorkflowNotFoundError",
    "WorkflowQuotaError",
    "error_from_payload",
    "namespace_error_type",
    "translate",
]


class PyCodeModeError(Exception):
    """Root of every error raised by py-code-mode, on the host and in agent code."""


class ConfigError(PyCodeModeError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class InvalidNameError(PyCodeModeError, ValueError):
    """A workflow or artifact name is not acceptable (unsafe path, keyword, clash)."""


class SessionClosedError(PyCodeModeError, RuntimeError):
    """The session was closed; create a new one to keep working."""


class ExecutorError(PyCodeModeError):
    """The executor could not start or lost its worker in a way it could not recover."""


class HostError(PyCodeModeError):
    """The host failed in a way that has no more specific class (logged on the host)."""


class StorageError(PyCodeModeError):
    """The storage backend failed to read or write (disk, Redis connection, size limit)."""


class QuotaExceededError(PyCodeModeError):
    """A write would go over a quota; nothing was changed.

    Attributes:
        quota: The setting, e.g. ``"max_artifact_bytes"``.
        value: What the write needed (bytes, characters or a count).
        limit: The quota's value.
    """

    def __init__(self, message: str, *, quota: str = "", value: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.quota = quota
        self.value = value
        self.limit = limit


class _NotFoundError(LookupError):
    # KeyError's str() is the repr of its argument; a message should read as prose.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ArtifactError(PyCodeModeError):
    """An artifact could not be saved or loaded."""


class ArtifactNotFoundError(ArtifactError, _NotFoundError, KeyError):
    """No artifact exists under the given name."""


class ArtifactQuotaError(ArtifactError, QuotaExceededError):
    """Saving an artifact would go over a quota (size, total bytes, count)."""


class WorkflowError(PyCodeModeError):
    """A workflow is invalid (syntax, missing ``run``) or failed."""


class WorkflowNotFoundError(WorkflowError, _NotFoundError, KeyError, AttributeError):
    """No workflow exists under the given name."""


class WorkflowQuotaError(WorkflowError, QuotaExceededError):
    """Creating a workflow would go over a quota (source, description, count)."""


class ToolError(PyCodeModeError):
    """A tool failed: non-zero exit, timeout, bad arguments or a remote error.

    Attributes:
        tool: Name of the tool, when known.
        stderr: Captured error output of the tool, when there is any.
    """

    def __init__(self, message: str, *, tool: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.tool = tool
        self.stderr = stderr


class ToolNotFoundError(ToolError, _NotFoundError, AttributeError):
    """No tool (or no callable of a tool) exists under the given name."""


class ToolDeniedError(ToolError):
    """A call marked ``confirm`` was not approved (denied, or nobody could be asked)."""


class DependencyError(PyCodeModeError):
    """A package spec is invalid, runtime deps are disabled, or installation failed."""


class RunInterrupted(BaseException):
    """Raised inside a run to stop it (timeout); not catchable by ``except Exception``."""


ERROR_TYPES: dict[str, type[PyCodeModeError]] = {
    cls.__name__: cls
    for cls in (
        PyCodeModeError,
        ConfigError,
        InvalidNameError,
        SessionClosedError,
        ExecutorError,
        HostError,
        StorageError,
        ArtifactError,
        ArtifactNotFoundError,
        ArtifactQuotaError,
        QuotaExceededError,
        WorkflowError,
        WorkflowNotFoundError,
        WorkflowQuotaError,
        ToolError,
        ToolNotFoundError,
        ToolDeniedError,
        DependencyError,
    )
}
for _cls in ERROR_TYPES.values():
    # Tracebacks shown to agents then read "ToolError: ..." in every executor, not a
    # module path that differs between them (the worker runs as a renamed copy).
    _cls.__module__ = "builtins"

TRANSLATIONS: dict[str, type[PyCodeModeError]] = {
    "redis.exceptions.RedisError": StorageError,
    "docker.errors.DockerException": ExecutorError,
    "pydantic_core._pydantic_core.ValidationError": ConfigError,
    "builtins.TimeoutError": HostError,
    "builtins.OSError": StorageError,
}
"""Third-party (and OS) error classes by qualified name -> the library class they
become. Names, not imports, so this module needs none of those packages."""


def translate(exc: BaseException, what: str) -> PyCodeModeError:
    """The library error for ``exc``, raised by the caller with ``from exc``.

    Args:
        exc: Any exception; a library error is returned unchanged.
        what: What was being done, e.g. ``"reading workflow 'x'"``: starts the message.
    """
    if isinstance(exc, PyCodeModeError):
        return exc
    for klass in type(exc).__mro__:
        target = TRANSLATIONS.get(f"{klass.__module__}.{klass.__qualname__}")
        if target is not None:
            return target(f"{what} failed: {type(exc).__name__}: {exc}")
    return HostError(f"{what} failed: internal error {type(exc).__name__}")


_NAMESPACE_ERRORS = {
    "tools": "ToolError",
    "workflows": "WorkflowError",
    "artifacts": "ArtifactError",
    "deps": "DependencyError",
    "session": "ConfigError",
}


def namespace_error_type(method: str) -> str:
    """Name of the error class for a failed host call ``method`` (``"tools.call"``, ...)."""
    return _NAMESPACE_ERRORS.get(method.split(".", 1)[0], "HostError")


def error_from_payload(payload: dict[str, Any]) -> PyCodeModeError:
    """Rebuild the library exception a host error payload describes."""
    cls = ERROR_TYPES.get(str(payload.get("type", "HostError")), HostError)
    message = str(payload.get("message", "host call failed"))
    if issubclass(cls, ToolError):
        return cls(
            message, tool=str(payload.get("tool", "")), stderr=str(payload.get("stderr", ""))
        )
    if issubclass(cls, QuotaExceededError):
        numbers = [payload.get(key) for key in ("value", "limit")]
        value, limit = (n if isinstance(n, int) and not isinstance(n, bool) else 0 for n in numbers)
        return cls(message, quota=str(payload.get("quota", "")), value=value, limit=limit)
    return cls(message)
