"""A per-call hook that sees a run's output while the run is still going.

Whoever awaits ``Session.run`` (the MCP server relaying progress) sets a listener
for the duration of the call; an executor that streams output from its worker
reads it when the run starts and feeds it each chunk as it arrives. The listener
is called on the event loop thread and must not block.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["OutputListener", "current_listener", "listening"]

OutputListener = Callable[[str], None]

_listener: contextvars.ContextVar[OutputListener | None] = contextvars.ContextVar(
    "py_code_mode_run_output_listener", default=None
)


def current_listener() -> OutputListener | None:
    """The listener set by the caller of the current run, if any."""
    return _listener.get()


@contextmanager
def listening(listener: OutputListener) -> Iterator[None]:
    """Send output chunks of runs started inside this block to ``listener``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
