"""Fixtures of the attack suite: a host with secrets, a loopback canary, the shipped tools.

Every attack runs as agent code in a session of each executor kind, with the
repository's example tools as shipped except that their declared directory is a
test project folder. The host around it holds things agent code must never reach:
a secret file outside the project, a secret in the host's environment, a secret
behind a tool file's ``${VAR}``, and a TCP service on host loopback (the canary)
that counts every connection it gets.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from py_code_mode import FileStorage, Session
from py_code_mode.execution import InProcessConfig, InProcessExecutor
from py_code_mode.execution.protocol import Executor
from tests._shipped_tools import shipped_tools
from tests.execution._container_support import container_executor

TOOL_SECRET_VAR = "PCM_ATTACK_TOOL_TOKEN"
HOST_SECRET_VAR = "PCM_ATTACK_HOST_ONLY"


def _in_process(tools_path: Path, **config: Any) -> Executor:
    return InProcessExecutor(InProcessConfig(tools_path=tools_path, **config))


def _subprocess(tools_path: Path, **config: Any) -> Executor:
    from py_code_mode.execution import SubprocessConfig, SubprocessExecutor

    return SubprocessExecutor(SubprocessConfig(tools_path=tools_path, **config))


EXECUTORS: dict[str, Callable[..., Executor]] = {
    "in-process": _in_process,
    "subprocess": _subprocess,
    "container": container_executor,  # skips where no Docker engine or test image is found
}


@dataclass
class Canary:
    """A TCP service on host loopback that records every connection."""

    port: int
    connections: list[bytes] = field(default_factory=list)


@pytest.fixture
def canary() -> Iterator[Canary]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    found = Canary(port=server.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1.0)
                try:
                    found.connections.append(conn.recv(4096))
                except OSError:
                    found.connections.append(b"")
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\ncanary")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield found
    stop.set()
    server.close()
    thread.join(timeout=5)


@dataclass
class Host:
    """What the host holds that agent code must never see or change."""

    project: Path
    """The directory the shipped tools declare (agents may read it)."""
    secret_file: Path
    """A file outside the project."""
    secrets: list[str]
    """Every secret value: the file's content, a host env var, a tool ``${VAR}`` value."""
    pwn: Path
    """A path attacks try to create on the host."""
    tools: Path


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.json").write_text('{"items": [{"name": "a"}, {"name": "b"}]}')
    (project / "notes.txt").write_text("hello from the project\n")
    home = tmp_path / "home"
    home.mkdir()
    file_secret, env_secret, tool_secret = (f"S3CRET-{secrets.token_hex(8)}" for _ in range(3))
    secret_file = home / ".secret"
    secret_file.write_text(file_secret + "\n")
    (project / "escape").symlink_to(secret_file)  # a link out of the project
    monkeypatch.setenv(HOST_SECRET_VAR, env_secret)
    monkeypatch.setenv(TOOL_SECRET_VAR, tool_secret)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    git_env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org"}
    git_env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")
    subprocess.run(["git", "-C", str(project), "add", "data.json"], check=True, env=git_env)
    subprocess.run(["git", "-C", str(project), "commit", "-qm", "first"], check=True, env=git_env)
    tools = shipped_tools(tmp_path / "tools", project)
    # A tool file whose credential comes from the host environment, as users write them.
    api = {
        "name": "api",
        "type": "http",
        "description": "An API with a token",
        "base_url": "https://api.example.invalid",
        "headers": {"Authorization": f"Bearer ${{{TOOL_SECRET_VAR}}}"},
        "endpoints": {"whoami": {"path": "/me", "description": "Who am I"}},
    }
    (tools / "api.yaml").write_text(yaml.safe_dump(api, sort_keys=False))
    return Host(
        project=project,
        secret_file=secret_file,
        secrets=[file_secret, env_secret, tool_secret],
        pwn=tmp_path / "pwn",
        tools=tools,
    )


@pytest.fixture(params=sorted(EXECUTORS))
async def session(
    request: pytest.FixtureRequest, host: Host, tmp_path: Path
) -> AsyncIterator[Session]:
    executor = EXECUTORS[str(request.param)](host.tools)
    async with Session(storage=FileStorage(tmp_path / "storage"), executor=executor) as started:
        yield started
