"""The subprocess executor: agent code runs in a child Python process."""

from py_code_mode.execution.subprocess.executor import SubprocessConfig, SubprocessExecutor

__all__ = ["SubprocessConfig", "SubprocessExecutor"]
