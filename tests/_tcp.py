"""TCP helpers for tests: a free local port, and a worker handshake as a host does it."""

from __future__ import annotations

import socket
from typing import Any

from py_code_mode.worker import wire


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
