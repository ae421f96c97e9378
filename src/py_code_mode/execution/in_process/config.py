"""Settings of the in-process executor."""

from __future__ import annotations

from py_code_mode.execution._configured import ExecutorConfig, Seconds

__all__ = ["InProcessConfig"]


class InProcessConfig(ExecutorConfig):
    """Settings of the in-process executor: the shared ones of :class:`ExecutorConfig`.

    ``deps`` are made sure to be installed in the host's environment at start;
    ``interrupt_grace`` is how long to wait for an interrupted run to stop.
    """

    interrupt_grace: Seconds = 1.0
