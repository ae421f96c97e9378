"""The server name (SNI) a TLS client asks for, read from its ClientHello.

The egress proxy reads the first TLS records of a tunnel to check that the name the
client will talk to is the one it asked the proxy for (no domain fronting); the
bytes read are then sent on unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Final

__all__ = ["read_client_hello"]

_HELLO_LIMIT: Final = 64 * 1024


async def read_client_hello(reader: asyncio.StreamReader) -> tuple[bytes, str | None]:
    """Read TLS records until the ClientHello is whole; return the bytes and its SNI.

    Raises:
        ValueError: The bytes are not a TLS ClientHello (or an oversized one).
    """
    data = b""
    message = b""
    while True:
        header = await reader.readexactly(5)
        length = int.from_bytes(header[3:5], "big")
        if header[0] != 0x16 or header[1] != 3 or not 0 < length <= 16384 + 256:
            raise ValueError("the tunnel did not start with a TLS handshake")
        body = await reader.readexactly(length)
        data += header + body
        message += body
        if len(message) >= 4:
            if message[0] != 1:
                raise ValueError("the first TLS handshake message is not a ClientHello")
            need = 4 + int.from_bytes(message[1:4], "big")
            if need > _HELLO_LIMIT:
                raise ValueError("the TLS ClientHello is too large")
            if len(message) >= need:
                return data, _sni(message[4:need])


def _sni(hello: bytes) -> str | None:
    """The host name in a ClientHello body's server_name extension, if any."""
    try:
        pos = 2 + 32  # client_version, random
        pos += 1 + hello[pos]  # session id
        pos += 2 + int.from_bytes(hello[pos : pos + 2], "big")  # cipher suites
        pos += 1 + hello[pos]  # compression methods
        end = pos + 2 + int.from_bytes(hello[pos : pos + 2], "big")
        pos += 2
        while pos + 4 <= min(end, len(hello)):
            kind = int.from_bytes(hello[pos : pos + 2], "big")
            size = int.from_bytes(hello[pos + 2 : pos + 4], "big")
            ext = hello[pos + 4 : pos + 4 + size]
            pos += 4 + size
            if kind == 0 and len(ext) >= 5 and ext[2] == 0:  # server_name, host_name
                name_len = int.from_bytes(ext[3:5], "big")
                return ext[5 : 5 + name_len].decode("ascii").lower().rstrip(".")
    except (IndexError, UnicodeDecodeError):
        return None
    return None
