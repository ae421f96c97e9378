"""Helpers to drive a real py-code-mode-mcp process through the official MCP client."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from py_code_mode.mcp_server.options import executor_available
from tests._tcp import free_port

SERVER = [sys.executable, "-m", "py_code_mode.mcp_server"]
START_TIMEOUT = 30.0
CALL_TIMEOUT = 60.0

SUBPROCESS_ONLY = pytest.mark.skipif(
    not executor_available("subprocess"), reason="the subprocess executor is not installed yet"
)


def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PY_CODE_MODE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.asynccontextmanager
async def stdio_session(base: Path, *args: str) -> AsyncIterator[ClientSession]:
    """An initialized client session on a server spawned over stdio."""
    params = StdioServerParameters(
        command=SERVER[0], args=[*SERVER[1:], "--base", str(base), *args], env=server_env()
    )
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, read_timeout_seconds=CALL_TIMEOUT) as session,
    ):
        with anyio.fail_after(START_TIMEOUT):
            await session.initialize()
        yield session


@contextlib.asynccontextmanager
async def http_session(url: str, token: str | None = None) -> AsyncIterator[ClientSession]:
    """An initialized client session over streamable HTTP (with a bearer token if given)."""
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with (
        create_mcp_http_client(headers=headers) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write, read_timeout_seconds=CALL_TIMEOUT) as session,
    ):
        with anyio.fail_after(START_TIMEOUT):
            await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> CallToolResult:
    with anyio.fail_after(CALL_TIMEOUT):
        return await session.call_tool(tool, arguments)


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def run(session: ClientSession, code: str) -> dict[str, Any]:
    """run_code's structured result; fails the test on a tool error."""
    result = await call(session, "run_code", code=code)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


def read_line(stream: IO[bytes], timeout: float = CALL_TIMEOUT) -> bytes:
    """One line from a pipe, failing the test if none arrives in time."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            pytest.fail(f"no line within {timeout} s")
    return stream.readline()


@dataclass
class HttpServer:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def http_server(
    base: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[HttpServer]:
    """A server on a free localhost port, stopped (bounded) afterwards.

    Without ``--tokens`` in ``args`` or a token in ``env`` it runs with ``--no-auth``.
    """
    port = port or free_port()
    environment = {**server_env(), **(env or {})}
    if "--tokens" not in args and "PY_CODE_MODE_TOKEN" not in environment:
        args = ("--no-auth", *args)
    process = subprocess.Popen(
        [*SERVER, "--base", str(base), "--transport", "http", "--port", str(port), *args],
        env=environment,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"the HTTP server exited early with code {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the HTTP server did not listen within {START_TIMEOUT} s")
                time.sleep(0.05)
        yield HttpServer(f"http://127.0.0.1:{port}/mcp", process)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.05)
    return False
