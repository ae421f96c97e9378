"""The worker's TCP listener: one host, authenticated with a shared token."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys

from py_code_mode.worker import wire
from tests._tcp import attempt_handshake

TOKEN = secrets.token_urlsafe(24)


def _start_listener(*auth: str) -> tuple[subprocess.Popen[str], int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "py_code_mode.worker.listen",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *auth,
            "--accept-timeout",
            "60",
        ],
        env={**os.environ, "PCM_TOKEN": TOKEN},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stderr is not None
    assert "listening" in worker.stderr.readline()
    return worker, port


def test_the_worker_listener_authenticates_every_connection() -> None:
    worker, port = _start_listener("--token-env", "PCM_TOKEN")
    try:
        assert attempt_handshake(port, b"wrong-token-wrong-token") is None
        assert attempt_handshake(port, b"") is None
        hello = attempt_handshake(port, TOKEN.encode())
        assert hello is not None
        assert hello["kind"] == "hello"
    finally:
        worker.kill()
        worker.wait(10)


def test_the_worker_listener_refuses_to_start_without_a_token() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "py_code_mode.worker.listen", "--port", "1", "--token-env", "NOPE"],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "NOPE"},
        check=False,
    )
    assert done.returncode == 2
    assert "refusing to listen without a token" in done.stderr


def test_only_the_first_authenticated_host_is_served() -> None:
    worker, port = _start_listener("--token-env", "PCM_TOKEN")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as first:
            token = TOKEN.encode()
            first.sendall(len(token).to_bytes(4, "big") + token)
            hello = wire.read_message(first.makefile("rb"))
            assert hello is not None
            assert hello["kind"] == "hello"
            try:
                second = attempt_handshake(port, token)
            except ConnectionRefusedError:
                second = None
            assert second is None
    finally:
        worker.kill()
        worker.wait(10)


def test_no_auth_serves_the_first_connection_without_a_token() -> None:
    worker, port = _start_listener("--no-auth")
    try:
        hello = attempt_handshake(port, None)
        assert hello is not None
        assert hello["kind"] == "hello"
    finally:
        worker.kill()
        worker.wait(10)
