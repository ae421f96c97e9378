"""Talking to a worker listening on TCP the way a host would."""

from __future__ import annotations

import socket
from typing import Any

from py_code_mode.worker import wire


def attempt_handshake(port: int, token: bytes | None) -> dict[str, Any] | None:
    """Connect to a worker's port; the hello message if it accepted the token."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        if token is not None:
            conn.sendall(len(token).to_bytes(4, "big") + token)
        reader = conn.makefile("rb")
        try:
            return wire.read_message(reader)
        except (wire.WireError, OSError):
            return None
