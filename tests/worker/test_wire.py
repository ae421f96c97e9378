"""The framed JSON protocol: values, frames, limits and malformed input."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import struct
from typing import Any

import pytest

from py_code_mode.worker import wire


def round_trip(message: dict[str, Any]) -> dict[str, Any]:
    stream = io.BytesIO()
    wire.write_frame(stream, wire.encode_message(message))
    stream.seek(0)
    decoded = wire.read_message(stream)
    assert decoded is not None
    return decoded


def frame_of(body: bytes) -> io.BytesIO:
    return io.BytesIO(struct.pack(">I", len(body)) + body)


# -- values ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(10**30),
        2.5,
        "text with ünïcode and \u2603",
        "lone surrogate \udc80 survives",
        [1, "two", None, [3.0]],
        {"nested": {"list": [{"deep": True}]}},
        b"",
        b"\x00\xffbinary",
        {"blob": b"\x01\x02", "list": [b"a", {"b": b"c"}]},
    ],
)
def test_values_come_back_equal_and_of_the_same_type(value: Any) -> None:
    decoded = round_trip({"kind": "rpc_result", "id": 1, "ok": True, "value": value})
    assert decoded["value"] == value
    assert type(decoded["value"]) is type(value)


@pytest.mark.parametrize(
    "value",
    [
        {"$b": "not really bytes"},
        {"$d": [["x", 1]]},
        {"$b": b"real bytes under a tag-like key"},
        {"$b": {"$d": {"$b": "nested"}}},
    ],
)
def test_dicts_that_look_like_tags_are_not_mistaken_for_them(value: Any) -> None:
    assert round_trip({"kind": "result", "id": 1, "outcome": value})["outcome"] == value


def test_bytearray_and_memoryview_arrive_as_bytes() -> None:
    decoded = round_trip(
        {
            "kind": "rpc",
            "id": 1,
            "method": "m",
            "params": {"a": bytearray(b"xy"), "b": memoryview(b"z")},
        }
    )
    assert decoded["params"] == {"a": b"xy", "b": b"z"}


def test_tuples_become_lists_like_json() -> None:
    assert round_trip({"kind": "rpc", "id": 1, "method": "m", "params": {"t": (1, (2, 3))}})[
        "params"
    ] == {"t": [1, [2, 3]]}


@pytest.mark.parametrize(
    ("value", "named"),
    [({1, 2}, "set"), (object(), "object"), (complex(1, 2), "complex"), ({(1, 2): "k"}, "keys")],
)
def test_values_json_cannot_hold_are_refused_with_a_clear_error(value: Any, named: str) -> None:
    with pytest.raises(wire.UnsupportedValueError, match=named):
        wire.encode_message({"kind": "rpc", "id": 1, "method": "m", "params": {"v": value}})


def test_a_cycle_is_refused_instead_of_recursing_forever() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(wire.UnsupportedValueError, match="nested deeper"):
        wire.encode_message({"kind": "rpc", "id": 1, "method": "m", "params": {"v": cycle}})


def test_the_body_is_plain_json_with_tagged_bytes() -> None:
    frame = wire.encode_message({"kind": "output", "id": 7, "text": "hi", "raw": b"\x00"})
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert json.loads(frame[4:]) == {"kind": "output", "id": 7, "text": "hi", "raw": {"$b": "AA=="}}


# -- frames ------------------------------------------------------------------------------
def test_several_messages_are_read_back_in_order_then_a_clean_end() -> None:
    stream = io.BytesIO()
    for number in range(3):
        wire.write_frame(stream, wire.encode_message({"kind": "run", "id": number, "code": "1"}))
    stream.seek(0)
    assert [wire.read_message(stream)["id"] for _ in range(3)] == [0, 1, 2]  # type: ignore[index]
    assert wire.read_message(stream) is None


def test_an_oversize_message_is_refused_before_anything_is_written() -> None:
    with pytest.raises(wire.FrameTooLargeError, match="exceeds the 1000 bytes limit"):
        wire.encode_message({"kind": "output", "id": 1, "text": "x" * 2000}, max_size=1000)


def test_a_frame_announcing_more_than_the_limit_is_refused_without_reading_it() -> None:
    stream = io.BytesIO(struct.pack(">I", 10**9) + b"{}")
    with pytest.raises(wire.FrameTooLargeError) as caught:
        wire.read_message(stream, max_size=1024 * 1024)
    assert caught.value.size == 10**9
    assert "MiB" in str(caught.value)
    assert stream.tell() == 4


@pytest.mark.parametrize("data", [b"\x00\x00", struct.pack(">I", 10) + b'{"kind"'])
def test_a_stream_that_ends_inside_a_frame_is_an_error(data: bytes) -> None:
    with pytest.raises(wire.ConnectionClosedError):
        wire.read_message(io.BytesIO(data))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "expected an object"),
        (b'{"no": "kind"}', "unknown message kind"),
        (b'{"kind": "exec"}', "unknown message kind"),
        (b'{"kind": "run", "code": {"$b": "!!!"}}', "invalid base64"),
        (b'{"kind": "run", "code": {"$b": 5}}', "base64 string"),
        (b'{"kind": "run", "code": {"$d": "x"}}', "one \\[key, value\\] pair"),
    ],
)
def test_malformed_bodies_are_protocol_errors(body: bytes, problem: str) -> None:
    with pytest.raises(wire.ProtocolError, match=problem):
        wire.read_message(frame_of(body))


def test_nothing_is_ever_evaluated_or_unpickled() -> None:
    payload = {"kind": "run", "id": 1, "code": "__import__('os').system('false')"}
    assert wire.read_message(frame_of(json.dumps(payload).encode())) == payload


class _Trickle(io.RawIOBase):
    """Accepts at most three bytes per write, like a congested pipe."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        chunk = bytes(b[:3])
        self.data.extend(chunk)
        return len(chunk)


def test_partial_writes_still_deliver_whole_frames() -> None:
    sink = _Trickle()
    wire.write_frame(
        sink, wire.encode_message({"kind": "log", "level": "info", "message": "m" * 50})
    )
    decoded = wire.read_message(io.BytesIO(bytes(sink.data)))
    assert decoded == {"kind": "log", "level": "info", "message": "m" * 50}


async def test_async_reader_and_blocking_writer_talk_over_a_socket_pair() -> None:
    left, right = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=left)
    try:
        outgoing = right.makefile("wb", buffering=0)
        wire.write_frame(
            outgoing, wire.encode_message({"kind": "hello", "version": 1, "b": b"\x00"})
        )
        wire.write_frame(outgoing, wire.encode_message({"kind": "ready", "warnings": []}))
        assert await wire.read_message_async(reader) == {
            "kind": "hello",
            "version": 1,
            "b": b"\x00",
        }
        assert await wire.read_message_async(reader) == {"kind": "ready", "warnings": []}
        right.sendall(struct.pack(">I", 100) + b"{")
        outgoing.close()
        right.close()
        with pytest.raises(wire.ConnectionClosedError):
            await wire.read_message_async(reader)
    finally:
        writer.close()
        right.close()


async def test_async_reader_refuses_oversize_frames_and_reports_a_clean_end() -> None:
    left, right = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=left)
    try:
        right.sendall(struct.pack(">I", 5000))
        with pytest.raises(wire.FrameTooLargeError):
            await wire.read_message_async(reader, max_size=4096)
    finally:
        writer.close()
        right.close()
    left2, right2 = socket.socketpair()
    reader2, writer2 = await asyncio.open_unix_connection(sock=left2)
    right2.close()
    assert await wire.read_message_async(reader2) is None
    writer2.close()
