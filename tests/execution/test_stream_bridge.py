"""The attach-stream relay: bytes cross both ways, and a closed side closes the other."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from py_code_mode.execution.container.stream_bridge import bridge


class _SocketLike:
    """Not a socket.socket (like the SSH client's stream): only recv/sendall/close."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(10)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_a_socket_like_stream_is_relayed_both_ways_and_its_end_closes_the_local_side() -> None:
    remote, engine_side = socket.socketpair()
    local = bridge(_SocketLike(remote))
    payload = bytes(range(256)) * 1000
    local.sendall(payload)
    assert _read_exactly(engine_side, len(payload)) == payload
    engine_side.sendall(b"hello from the worker")
    assert _read_exactly(local, 21) == b"hello from the worker"
    engine_side.close()
    local.settimeout(10)
    assert local.recv(10) == b""
    local.close()


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


def test_a_tls_stream_is_relayed_both_ways(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_pair
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[ssl.SSLSocket] = []

    def accept() -> None:
        conn, _ = listener.accept()
        accepted.append(server_ctx.wrap_socket(conn, server_side=True))

    thread = threading.Thread(target=accept)
    thread.start()
    tls = client_ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1"
    )
    thread.join(10)
    engine_side = accepted[0]
    local = bridge(tls)
    payload = b"x" * 300_000
    local.sendall(payload)
    assert _read_exactly(engine_side, len(payload)) == payload
    engine_side.sendall(b"framed reply")
    assert _read_exactly(local, 12) == b"framed reply"
    engine_side.close()
    listener.close()
    local.settimeout(10)
    assert local.recv(10) == b""
    local.close()
