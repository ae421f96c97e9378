"""The in-process executor: agent code runs in a thread of the host process."""

from py_code_mode.execution.in_process.executor import InProcessConfig, InProcessExecutor

__all__ = ["InProcessConfig", "InProcessExecutor"]
