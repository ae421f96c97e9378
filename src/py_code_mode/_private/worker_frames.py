"""Check every message a worker sends before the host uses any part of it.

The worker runs agent code, so everything it sends is untrusted: agent code can
write raw frames to the worker's pipe or socket. :func:`check_worker_frame`
holds a decoded message to the shapes the worker runtime really sends (kinds,
field types, id types, text sizes) and raises :class:`~py_code_mode.worker.wire.ProtocolError`
otherwise; the connection then ends that worker with ``error_type="ProtocolError"``
and the session starts a fresh one.

:class:`LogLimiter` bounds what a worker's ``log`` messages may put into the host's
log: a burst, then a steady rate, and a total per worker.
"""

from __future__ import annotations

import time
from typing import Any, Final

from py_code_mode._private.safe_text import safe_text
from py_code_mode.worker.wire import ProtocolError

__all__ = [
    "LOG_BURST",
    "LOG_MAX_MESSAGES",
    "LOG_MESSAGE_CHARS",
    "LogLimiter",
    "check_worker_frame",
]

MAX_ID_CHARS: Final = 128
MAX_NAME_CHARS: Final = 256
"""RPC method names, log levels, error types."""
LOG_MESSAGE_CHARS: Final = 4000
LOG_BURST: Final = 50
LOG_RATE: Final = 5.0
"""Log messages per second a worker may keep sending after its burst."""
LOG_MAX_MESSAGES: Final = 1000
"""Log messages forwarded per worker in total; the rest are counted, not logged."""

_FROM_WORKER: Final = frozenset({"hello", "ready", "output", "result", "rpc", "reset_done", "log"})


def _check_id(kind: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ProtocolError(f"{kind!r} message has an id of type {type(value).__name__}")
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise ProtocolError(f"{kind!r} message has an id of {len(value)} characters")


def _check_str(kind: str, field: str, value: Any, limit: int | None, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise ProtocolError(f"{kind!r} message: {field} is {type(value).__name__}, not a string")
    if limit is not None and len(value) > limit:
        raise ProtocolError(f"{kind!r} message: {field} is {len(value)} characters (max {limit})")


def check_worker_frame(message: dict[str, Any]) -> dict[str, Any]:
    """Return ``message`` if it is one the worker runtime can legitimately send.

    Only shapes are checked here; sizes of whole frames are bounded when they are
    read, and values are data the host never executes.

    Raises:
        ProtocolError: Unknown kind for this direction, or a field of the wrong type.
    """
    kind = message.get("kind")
    if kind not in _FROM_WORKER:
        raise ProtocolError(f"unexpected {kind!r} message from the worker")
    if kind in ("output", "result", "rpc", "reset_done"):
        _check_id(kind, message.get("id"))
    if kind == "output":
        _check_str(kind, "text", message.get("text"), None, optional=False)
    elif kind == "rpc":
        _check_str(kind, "method", message.get("method"), MAX_NAME_CHARS, optional=False)
        if not isinstance(message.get("params"), dict):
            raise ProtocolError("'rpc' message: params is not an object")
    elif kind == "result":
        outcome = message.get("outcome")
        if not isinstance(outcome, dict):
            raise ProtocolError("'result' message: outcome is not an object")
        _check_str(kind, "outcome.stdout", outcome.get("stdout"), None, optional=True)
        _check_str(kind, "outcome.error", outcome.get("error"), None, optional=True)
        error_type = outcome.get("error_type")
        _check_str(kind, "outcome.error_type", error_type, MAX_NAME_CHARS, optional=True)
    elif kind == "log":
        _check_str(kind, "level", message.get("level"), MAX_NAME_CHARS, optional=False)
        _check_str(kind, "message", message.get("message"), None, optional=False)
    elif kind == "hello":
        version = message.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ProtocolError("'hello' message: version is not an integer")
    elif kind == "ready":
        warnings = message.get("warnings", [])
        if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
            raise ProtocolError("'ready' message: warnings is not a list of strings")
    return message


class LogLimiter:
    """Token bucket plus a total, for one worker's log messages.

    Args:
        burst: Messages let through at once.
        rate: Messages per second refilled after the burst.
        total: Messages let through over the worker's life.
    """

    def __init__(
        self, *, burst: int = LOG_BURST, rate: float = LOG_RATE, total: int = LOG_MAX_MESSAGES
    ) -> None:
        self._tokens = float(burst)
        self._burst = float(burst)
        self._rate = rate
        self._left = total
        self._stamp = time.monotonic()
        self.dropped = 0
        """Messages refused since the last one let through."""

    def admit(self, text: str) -> str | None:
        """The text to log (capped and made UTF-8 safe), or None when over the limit.

        When messages were dropped before this one, the returned text says how many.
        """
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._left <= 0 or self._tokens < 1.0:
            self.dropped += 1
            return None
        self._tokens -= 1.0
        self._left -= 1
        text = safe_text(text[:LOG_MESSAGE_CHARS])
        if self.dropped:
            text = f"[{self.dropped} earlier log message(s) dropped: rate limit] {text}"
            self.dropped = 0
        if self._left == 0:
            text += " [log limit reached: further log messages of this worker are dropped]"
        return text
