"""Per-run output capture that leaves other threads' output alone.

``sys.stdout``/``sys.stderr`` are replaced once by routers that send writes to the
buffer of the run active in the current context (a :mod:`contextvars` variable, so
asyncio tasks started by agent code follow their run) and everything else to the
stream that was there before. The host's own printing is never swallowed.
"""

from __future__ import annotations

import contextvars
import io
import sys
import threading
from typing import TextIO

__all__ = ["OutputBuffer", "active_buffer", "install_routers"]

TRUNCATION_MARKER = "\n[... output truncated: {dropped} more characters not shown ...]\n"


class OutputBuffer:
    """Collects a run's output up to ``limit`` characters, then counts what it drops."""

    __slots__ = ("_chunks", "_lock", "_size", "dropped", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._chunks: list[str] = []
        self._size = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        """Append ``text``, keeping at most ``limit`` characters in total."""
        n = len(text)
        size = self._size + n
        if size <= self.limit:
            # Lock-free fast path (``print`` writes twice per line): no call sits between
            # reading and storing ``_size``, so the GIL cannot switch threads in between,
            # and ``list.append`` is atomic.
            self._size = size
            self._chunks.append(text)
            return n
        with self._lock:
            room = self.limit - self._size
            if room >= len(text):
                self._chunks.append(text)
                self._size += len(text)
            else:
                if room > 0:
                    self._chunks.append(text[:room])
                    self._size += room
                self.dropped += len(text) - max(room, 0)
        return len(text)

    def read_from(self, index: int) -> tuple[str, int]:
        """Text kept since chunk ``index`` and the index to pass next time.

        Lets a worker stream a run's output while it is still being written.
        """
        with self._lock:
            end = len(self._chunks)  # writers may append meanwhile: stop where we counted
            return "".join(self._chunks[index:end]), end

    def getvalue(self) -> str:
        """Everything kept, with a marker saying how much was dropped."""
        with self._lock:
            text = "".join(self._chunks)
            if self.dropped:
                text += TRUNCATION_MARKER.format(dropped=self.dropped)
            return text


active_buffer: contextvars.ContextVar[OutputBuffer | None] = contextvars.ContextVar(
    "py_code_mode_output", default=None
)


class _Router(io.TextIOBase):
    """A text stream that writes to the active run's buffer or to a fallback."""

    def __init__(self, fallback: TextIO) -> None:
        self._fallback = fallback

    @property
    def fallback(self) -> TextIO:
        return self._fallback

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        buffer = active_buffer.get()
        if buffer is not None:
            return buffer.write(s)
        return self._fallback.write(s)

    def flush(self) -> None:
        if active_buffer.get() is None:
            self._fallback.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._fallback, "encoding", None) or "utf-8"

    def fileno(self) -> int:
        return self._fallback.fileno()


_install_lock = threading.Lock()


def install_routers() -> None:
    """Put routers on ``sys.stdout`` and ``sys.stderr`` unless they are already there.

    Called before every run: something else (a test runner, a notebook) may have
    swapped the streams since the last run, in which case the new stream becomes the
    fallback.
    """
    if isinstance(sys.stdout, _Router) and isinstance(sys.stderr, _Router):
        return
    with _install_lock:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout)
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr)
