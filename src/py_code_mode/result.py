"""The result of one ``Session.run``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from py_code_mode._private.safe_text import safe_data, safe_text

__all__ = ["ExecutionResult"]


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """What one run of agent code produced.

    Errors in agent code are reported here rather than raised, so a caller (an MCP
    server, an agent loop) can always hand the outcome back to the model.

    Attributes:
        value: Value of a trailing expression, like a REPL: JSON data as-is, anything
            else as its ``repr``; ``None`` when the code ends in a statement.
        stdout: What the run printed to ``sys.stdout`` (and, in worker processes,
            everything written to file descriptors 1 and 2), possibly truncated with a
            marker when it exceeded the executor's output limit.
        error: Traceback text pointing at the agent's code, or ``None``.
        error_type: The exception's class name (``"ValueError"``, ``"TimeoutError"``).
        execution_time_ms: Wall time of the run on the host.
        variables_lost: True when the run killed the worker or was reset, so names
            defined by earlier runs are gone.
        metadata: Executor-specific facts about the run (e.g. ``worker_restarted``,
            ``images``: artifact names of images the run showed).
        stderr: What the run wrote to ``sys.stderr``, kept apart from ``stdout``.
    """

    value: Any = None
    stdout: str = ""
    error: str | None = None
    error_type: str | None = None
    execution_time_ms: float = 0.0
    variables_lost: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""

    def __post_init__(self) -> None:
        # The one place run results leave the host: whatever agent code printed or
        # returned, every string here encodes as UTF-8 (lone surrogates escaped), so
        # no MCP transport, terminal or JSON encoder can fail on it.
        object.__setattr__(self, "value", safe_data(self.value))
        object.__setattr__(self, "stdout", safe_text(self.stdout))
        object.__setattr__(self, "stderr", safe_text(self.stderr))
        if self.error is not None:
            object.__setattr__(self, "error", safe_text(self.error))
        if self.error_type is not None:
            object.__setattr__(self, "error_type", safe_text(self.error_type))
        object.__setattr__(self, "metadata", safe_data(self.metadata))

    @property
    def is_ok(self) -> bool:
        """True when the run raised nothing."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for JSON and MCP structured content."""
        data = asdict(self)
        data["is_ok"] = self.is_ok
        return data

    @classmethod
    def failure(
        cls,
        message: str,
        error_type: str,
        *,
        stdout: str = "",
        execution_time_ms: float = 0.0,
        variables_lost: bool = False,
    ) -> ExecutionResult:
        """Build a failed result that did not come from a traceback."""
        return cls(
            stdout=stdout,
            error=message,
            error_type=error_type,
            execution_time_ms=execution_time_ms,
            variables_lost=variables_lost,
        )
