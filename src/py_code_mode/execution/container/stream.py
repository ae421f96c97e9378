"""Docker's multiplexed attach stream: stdout separated from stderr.

Without a TTY, Docker prefixes every chunk of an attached container's output with
an 8-byte header: the stream (1 stdout, 2 stderr), three zero bytes and the
big-endian payload length. Over the stdio transport stdout carries the worker
protocol; stderr carries only the worker's own diagnostics, of which a tail is kept.
"""

from __future__ import annotations

import asyncio

from py_code_mode.execution._isolated.client import STDERR_TAIL

__all__ = ["AttachProtocol", "DockerDemux"]

_HEADER = 8
_STDOUT = 1
_STDERR = 2


class DockerDemux:
    """Splits the attach stream; returns stdout bytes, keeps the tail of stderr.

    Frames may be split anywhere across reads: the state of a frame read halfway is
    kept, so one demultiplexer can be fed by a blocking reader first and by the
    event loop later.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._stream = 0
        self._remaining = 0
        self.stderr_tail = b""

    def feed(self, data: bytes) -> bytes:
        """Take bytes read from the attach socket; return the stdout bytes among them."""
        buffer = self._buffer
        buffer += data
        stdout: list[bytes] = []
        while buffer:
            if not self._remaining:
                if len(buffer) < _HEADER:
                    break
                self._stream = buffer[0]
                self._remaining = int.from_bytes(buffer[4:_HEADER], "big")
                del buffer[:_HEADER]
                continue
            take = min(self._remaining, len(buffer))
            if self._stream == _STDOUT:
                stdout.append(bytes(buffer[:take]))
            elif self._stream == _STDERR:
                self.stderr_tail = (self.stderr_tail + bytes(buffer[:take]))[-STDERR_TAIL:]
            del buffer[:take]
            self._remaining -= take
        return b"".join(stdout)


class AttachProtocol(asyncio.StreamReaderProtocol):
    """The attach stream on the event loop, demultiplexed; stdout goes to the reader.

    Args:
        reader: Where the worker's protocol bytes go.
        demux: The demultiplexer that read the stream so far.
        carries_protocol: Whether stdout is the protocol (stdio transport); with the
            TCP transport it is dropped.
    """

    def __init__(
        self, reader: asyncio.StreamReader, demux: DockerDemux, *, carries_protocol: bool
    ) -> None:
        super().__init__(reader)
        self.demux = demux
        self._carries_protocol = carries_protocol

    def data_received(self, data: bytes) -> None:
        """Demultiplex ``data``; hand its stdout to the reader."""
        stdout = self.demux.feed(data)
        if stdout and self._carries_protocol:
            super().data_received(stdout)
