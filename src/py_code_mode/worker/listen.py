"""Serve the worker on a TCP port, to one host that proves it holds the token.

``python -m <worker package>.listen --port N [--host ADDR] (--token-file PATH |
--token-env NAME | --no-auth) [--accept-timeout SECONDS]``

For a worker that runs somewhere the host cannot attach to its stdio (a container
platform, another machine). Every connection must first send the shared token as
one frame (4-byte big-endian length, then the token's UTF-8 bytes); the worker
compares it in constant time and closes connections that fail. The first connection
that passes is served exactly as ``--fd`` would be (see :mod:`.server`): the listening
socket is closed, so one worker serves one host, and the worker ends when that host
goes away.

Stdlib-only, like the rest of the package.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import os
import socket
import sys
import time

from .server import main as serve

__all__ = ["main", "read_token_frame"]

_MAX_TOKEN = 4096
_HANDSHAKE_TIMEOUT = 10.0
_FAILURE_DELAY = 0.2
"""Seconds to wait after a failed attempt: slows down guessing."""


def read_token_frame(conn: socket.socket) -> bytes | None:
    """Read the token frame a host sends first; None when it is malformed."""
    header = _recv_exactly(conn, 4)
    if header is None:
        return None
    length = int.from_bytes(header, "big")
    if not 0 < length <= _MAX_TOKEN:
        return None
    return _recv_exactly(conn, length)


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _load_token(args: argparse.Namespace) -> bytes | None:
    if args.token_file:
        with open(args.token_file, "rb") as fh:
            token = fh.read().strip()
        # Agent code runs as this same user later: leave nothing for it to read.
        with contextlib.suppress(OSError):
            os.unlink(args.token_file)
        return token
    if args.token_env:
        value = os.environ.pop(args.token_env, "")
        return value.encode("utf-8")
    return None


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m py_code_mode_worker.listen",
        description="Serve the py-code-mode worker on TCP to one authenticated host.",
    )
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a container's own interface
    parser.add_argument("--port", type=int, required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--token-file", help="file holding the token; deleted once read")
    source.add_argument("--token-env", help="environment variable holding the token")
    source.add_argument(
        "--no-auth",
        action="store_true",
        help="accept the first connection without a token (only on a trusted network)",
    )
    parser.add_argument(
        "--accept-timeout",
        type=float,
        default=None,
        help="give up when no host has authenticated within this many seconds",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Listen, authenticate one host, then serve it; returns the exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    token = _load_token(args)
    if args.no_auth:
        token = None
    elif not token:
        sys.stderr.write(
            "py-code-mode worker: refusing to listen without a token; give a non-empty "
            "--token-file or --token-env (or --no-auth on a trusted network)\n"
        )
        return 2
    server = socket.create_server((args.host, args.port))
    deadline = None if args.accept_timeout is None else time.monotonic() + args.accept_timeout
    sys.stderr.write(f"py-code-mode worker: listening on {args.host}:{args.port}\n")
    sys.stderr.flush()
    while True:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                sys.stderr.write("py-code-mode worker: no host authenticated in time\n")
                return 3
            server.settimeout(remaining)
        try:
            conn, _addr = server.accept()
        except TimeoutError:
            continue
        if token is None:
            break  # --no-auth
        conn.settimeout(_HANDSHAKE_TIMEOUT)
        try:
            presented = read_token_frame(conn)
        except OSError:
            presented = None
        if presented is not None and hmac.compare_digest(presented, token):
            break
        conn.close()
        time.sleep(_FAILURE_DELAY)
    server.close()
    conn.settimeout(None)
    return serve(["--fd", str(conn.detach())])


if __name__ == "__main__":
    sys.exit(main())
