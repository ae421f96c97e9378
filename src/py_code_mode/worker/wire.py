"""The framed JSON protocol between a host and a worker process.

One frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON
holding one object with a ``"kind"``. Nothing is pickled or evaluated: both ends
only ever parse JSON, so a compromised worker can at worst send wrong data.

Values that JSON cannot hold natively are tagged:

* ``bytes`` (and ``bytearray``/``memoryview``) travel as ``{"$b": "<base64>"}``;
* a genuine one-key dict whose key is a tag travels as ``{"$d": [[key, value]]}``,
  so data that merely looks like a tag comes back unchanged.

The module is stdlib-only and transport-agnostic: blocking helpers work on any
binary stream with ``read``/``write`` (socket files, pipes, a container's attached
stdio), async helpers on :class:`asyncio.StreamReader`/``StreamWriter``.

Message kinds (``"id"`` pairs requests with answers):

========== ================ ======================================================
kind       direction        fields
========== ================ ======================================================
hello      worker -> host   version, pid, python, executable
configure  host -> worker   output_limit, max_frame, limits, site_dirs, sys_path
ready      worker -> host   warnings
run        host -> worker   id, code
output     worker -> host   id, text (a run's output so far, in order, optional)
result     worker -> host   id, outcome {value, stdout, error, error_type}
rpc        worker -> host   id, method, params (a namespace call from agent code)
rpc_result host -> worker   id, ok, value | error {type, message, ...}
interrupt  host -> worker   id (of the run to interrupt)
reset      host -> worker   id
reset_done worker -> host   id
shutdown   host -> worker   (none)
log        worker -> host   level, message (worker diagnostics)
========== ================ ======================================================
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "DEFAULT_MAX_FRAME",
    "KINDS",
    "PROTOCOL_VERSION",
    "ConnectionClosedError",
    "FrameTooLargeError",
    "ProtocolError",
    "UnsupportedValueError",
    "WireError",
    "decode_body",
    "encode_message",
    "read_message",
    "read_message_async",
    "to_wire",
    "write_frame",
]

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
"""Largest frame body either end accepts unless told otherwise (64 MiB)."""

KINDS = frozenset(
    {
        "hello",
        "configure",
        "ready",
        "run",
        "output",
        "result",
        "rpc",
        "rpc_result",
        "interrupt",
        "reset",
        "reset_done",
        "shutdown",
        "log",
    }
)

_HEADER = struct.Struct(">I")
_TAG_BYTES = "$b"
_TAG_DICT = "$d"
_TAGS = frozenset({_TAG_BYTES, _TAG_DICT})
_MAX_DEPTH = 200


class WireError(Exception):
    """Base of protocol failures."""


class ProtocolError(WireError):
    """The peer sent something that is not a valid frame or message."""


class FrameTooLargeError(WireError):
    """A frame is larger than the agreed maximum; nothing was sent or read past it."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"message of {_mib(size)} exceeds the {_mib(limit)} limit of one protocol frame"
        )
        self.size = size
        self.limit = limit


class UnsupportedValueError(WireError, TypeError):
    """A value cannot travel as JSON (an object, a set, a cycle, ...)."""


class ConnectionClosedError(WireError, EOFError):
    """The peer closed the stream in the middle of a frame."""


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB" if size >= 1024 * 1024 else f"{size} bytes"


# -- values ------------------------------------------------------------------------------
def to_wire(value: Any, _depth: int = 0) -> Any:
    """Convert ``value`` to JSON-ready data, tagging bytes and tag-like dicts.

    Tuples become lists and str/int/float/dict/list subclasses (enums, OrderedDict)
    become their base type, as with :mod:`json`.

    Raises:
        UnsupportedValueError: ``value`` holds something JSON cannot represent.
    """
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if _depth > _MAX_DEPTH:
        raise UnsupportedValueError(
            f"value is nested deeper than {_MAX_DEPTH} levels (or contains a cycle)"
        )
    if isinstance(value, dict):
        out = {key: to_wire(item, _depth + 1) for key, item in value.items()}
        if len(out) == 1:
            key = next(iter(out))
            if key in _TAGS:
                return {_TAG_DICT: [[key, out[key]]]}
        return out
    if isinstance(value, list | tuple):
        return [to_wire(item, _depth + 1) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return {_TAG_BYTES: base64.b64encode(value).decode("ascii")}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    raise UnsupportedValueError(
        f"a value of type {type(value).__name__} cannot be sent between the worker and the "
        "host; use JSON data (str, int, float, bool, None, list, dict with str keys) or bytes"
    )


def _object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if _TAG_BYTES in obj:
            encoded = obj[_TAG_BYTES]
            if not isinstance(encoded, str):
                raise ProtocolError("bytes tag must hold a base64 string")
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ProtocolError(f"invalid base64 in bytes tag: {exc}") from None
        if _TAG_DICT in obj:
            pairs = obj[_TAG_DICT]
            if not (
                isinstance(pairs, list)
                and len(pairs) == 1
                and isinstance(pairs[0], list)
                and len(pairs[0]) == 2
                and isinstance(pairs[0][0], str)
            ):
                raise ProtocolError("escaped dict tag must hold one [key, value] pair")
            return {pairs[0][0]: pairs[0][1]}
    return obj


# -- frames ------------------------------------------------------------------------------
def encode_message(message: dict[str, Any], max_size: int = DEFAULT_MAX_FRAME) -> bytes:
    """Serialise one message into a complete frame (header and body).

    Raises:
        UnsupportedValueError: The message holds a value JSON cannot represent.
        FrameTooLargeError: The body would exceed ``max_size`` bytes.
    """
    try:
        body = json.dumps(to_wire(message), separators=(",", ":")).encode("utf-8")
    except UnsupportedValueError:
        raise
    except (TypeError, ValueError, RecursionError) as exc:
        # Non-string dict keys json cannot coerce, ints too long to print, ...
        raise UnsupportedValueError(f"value cannot be encoded as JSON: {exc}") from None
    if len(body) > max_size:
        raise FrameTooLargeError(len(body), max_size)
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    """Parse and check one frame body.

    Raises:
        ProtocolError: Not UTF-8 JSON, not an object, or no known ``kind``.
    """
    try:
        message = json.loads(body, object_hook=_object_hook)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"frame is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame holds a {type(message).__name__}, expected an object")
    kind = message.get("kind")
    if kind not in KINDS:
        raise ProtocolError(f"unknown message kind {kind!r}")
    return message


def _check_length(length: int, max_size: int) -> None:
    if length > max_size:
        raise FrameTooLargeError(length, max_size)


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes | None: ...


class _Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> int | None: ...


def _read_exactly(stream: _Readable, size: int, *, at_boundary: bool) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if at_boundary and remaining == size:
                return None
            raise ConnectionClosedError(
                f"stream closed {size - remaining} bytes into a {size}-byte read"
            )
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_message(stream: _Readable, max_size: int = DEFAULT_MAX_FRAME) -> dict[str, Any] | None:
    """Read one message from a blocking binary stream; ``None`` at a clean end of stream.

    Raises:
        FrameTooLargeError: The announced frame exceeds ``max_size`` (the stream is then
            unusable: the body was not consumed).
        ConnectionClosedError: The stream ended inside a frame.
        ProtocolError: The body is not a valid message.
    """
    header = _read_exactly(stream, _HEADER.size, at_boundary=True)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    _check_length(length, max_size)
    body = _read_exactly(stream, length, at_boundary=False)
    assert body is not None
    return decode_body(body)


def write_frame(stream: _Writable, frame: bytes) -> None:
    """Write a whole frame from :func:`encode_message`, coping with partial writes."""
    view = memoryview(frame)
    while view:
        written = stream.write(view)
        if written is None:  # a non-blocking raw stream that could not take anything
            raise BlockingIOError("stream is not writable now; use a blocking stream")
        view = view[written:]
    flush: Callable[[], None] | None = getattr(stream, "flush", None)
    if flush is not None:
        flush()


async def read_message_async(
    reader: asyncio.StreamReader, max_size: int = DEFAULT_MAX_FRAME
) -> dict[str, Any] | None:
    """Async twin of :func:`read_message`; ``None`` at a clean end of stream."""
    import asyncio  # only the host reads asynchronously; the worker never loads it here

    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ConnectionClosedError("stream closed inside a frame header") from None
    (length,) = _HEADER.unpack(header)
    _check_length(length, max_size)
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ConnectionClosedError(
            f"stream closed {len(exc.partial)} bytes into a {length}-byte frame"
        ) from None
    return decode_body(body)
