"""Per-run output capture that leaves other threads' output alone.

``sys.stdout``/``sys.stderr`` are replaced once by routers that send writes to the
buffer of the run active in the current context (a :mod:`contextvars` variable, so
asyncio tasks started by agent code follow their run) and everything else to the
stream that was there before. The host's own printing is never swallowed.
"""

from __future__ import annotations

import codecs
import contextvars
import io
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

__all__ = [
    "LATE_OUTPUT_HEADER",
    "OutputBuffer",
    "active_buffer",
    "active_error_buffer",
    "install_routers",
    "run_threads",
]

TRUNCATION_MARKER = "\n[... output truncated: {dropped} more characters not shown ...]\n"


class OutputBuffer:
    """Collects a run's output up to ``limit`` characters, then counts what it drops."""

    __slots__ = ("_chunks", "_lock", "_size", "before_write", "dropped", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._chunks: list[str] = []
        self._size = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self.before_write: Callable[[], object] | None = None
        """Called before each write; a worker moves pending fd-level output in first."""

    def write(self, text: str) -> int:
        """Append ``text``, keeping at most ``limit`` characters in total."""
        if self.before_write is not None:
            self.before_write()
        return self.append(text)

    def append(self, text: str) -> int:
        """:meth:`write` without ``before_write`` (for whoever that hook calls)."""
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
active_error_buffer: contextvars.ContextVar[OutputBuffer | None] = contextvars.ContextVar(
    "py_code_mode_error_output", default=None
)
"""Where the active run's ``sys.stderr`` goes; unset means together with stdout."""


LATE_OUTPUT_HEADER = "[output printed by threads of the previous run after it ended]\n"
LATE_OUTPUT_LIMIT = 100_000


class _RunThreads:
    """Threads agent code started, so their output is not lost.

    A thread does not inherit the run's context, so its prints would miss the run's
    buffer. Threads that did not exist when a run began are the run's: while it
    runs their output joins it; once it has ended, their output is kept (bounded)
    and handed to the next run, which shows it first under :data:`LATE_OUTPUT_HEADER`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: set[int | None] = set()
        self._current: tuple[OutputBuffer, OutputBuffer] | None = None
        self._late_ids: set[int | None] = set()
        self._late = OutputBuffer(LATE_OUTPUT_LIMIT)

    def begin(self, out: OutputBuffer, err: OutputBuffer) -> str:
        """Start attributing new threads to a run; returns late output of the last one."""
        with self._lock:
            alive = {t.ident for t in threading.enumerate()}
            # Threads of earlier runs that still live write into this run now.
            self._known = alive - self._late_ids
            self._current = (out, err)
            late = self._late
            self._late = OutputBuffer(LATE_OUTPUT_LIMIT)
        text = late.getvalue()
        return LATE_OUTPUT_HEADER + text if text else ""

    def end(self) -> None:
        """Keep output of the run's threads that are still alive until the next run."""
        with self._lock:
            alive = {t.ident for t in threading.enumerate()}
            self._late_ids = alive - self._known
            self._current = None

    def target(self, errors: bool) -> OutputBuffer | None:
        """Where a write of the calling thread goes, when it has no run context."""
        ident = threading.get_ident()
        current = self._current
        if current is not None:
            if ident in self._known:
                return None
            return current[1] if errors else current[0]
        if ident in self._late_ids:
            return self._late
        return None


run_threads = _RunThreads()


class _BinaryWriter(io.RawIOBase):
    """``sys.stdout.buffer``: bytes decoded as UTF-8 (bad bytes replaced) into the router."""

    def __init__(self, router: _Router) -> None:
        self._router = router
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        text = self._decoder.decode(data)
        if text:
            self._router.write(text)
        return len(data)

    def flush(self) -> None:
        self._router.flush()


class _Router(io.TextIOBase):
    """A text stream that writes to the active run's buffer or to a fallback."""

    def __init__(self, fallback: TextIO, *, errors: bool = False) -> None:
        self._fallback = fallback
        self._errors = errors
        self._binary: _BinaryWriter | None = None

    @property
    def fallback(self) -> TextIO:
        return self._fallback

    def write(self, s: str) -> int:
        buffer = (self._errors and active_error_buffer.get()) or active_buffer.get()
        if buffer is not None and type(s) is str:
            # ``print`` calls this twice per line, so the common case (a run's own
            # buffer with room left) is OutputBuffer.write's fast path inlined: two
            # Python frames less per write. Nothing here calls out between reading and
            # storing ``_size`` (``before_write`` comes first), so the GIL cannot hand
            # over to another writer in between; ``list.append`` is atomic.
            before = buffer.before_write
            if before is not None:
                before()
            n = len(s)
            size = buffer._size + n
            if size <= buffer.limit:
                buffer._size = size
                buffer._chunks.append(s)
                return n
            return buffer.append(s)
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if buffer is None:
            buffer = run_threads.target(self._errors)
        if buffer is not None:
            return buffer.write(s)
        return self._fallback.write(s)

    @property
    def buffer(self) -> _BinaryWriter:
        """A binary view, like ``sys.stdout.buffer``, that lands in the same place."""
        if self._binary is None:
            self._binary = _BinaryWriter(self)
        return self._binary

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
            sys.stderr = _Router(sys.stderr, errors=True)
