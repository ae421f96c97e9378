"""CLI tool calls run in a per-call jail: declared paths only, private /tmp, no network."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Any

import pytest

from py_code_mode.errors import ToolError
from py_code_mode.tools.cli import CliTool
from py_code_mode.tools.models import load_cli_tool

from ._procs import gone
from .conftest import variant_problem


@pytest.fixture(autouse=True)
def _need_bwrap() -> None:
    problem = variant_problem("subprocess-bwrap")
    if problem is not None:
        pytest.skip(problem)


def sh(script: str, **extra: Any) -> CliTool:
    return load_cli_tool(
        {"name": "probe", "command": "sh", "args": ["-c", script], "timeout": 10, **extra}
    )


@pytest.fixture
def home_canary() -> Any:
    path = Path.home() / f".pcm-tool-canary-{secrets.token_hex(4)}"
    value = f"TOOLCANARY{secrets.token_hex(8)}"
    path.write_text(value)
    yield path, value
    path.unlink(missing_ok=True)


async def test_a_tool_sees_no_host_home_and_no_undeclared_path(
    home_canary: tuple[Path, str], tmp_path: Path
) -> None:
    path, value = home_canary
    (tmp_path / "secret.txt").write_text(value)
    script = (
        f"cat {path} {tmp_path}/secret.txt /etc/shadow 2>&1; ls /var/run/docker.sock 2>&1; true"
    )
    out = await sh(script).call(None, {})
    assert value not in out
    assert "No such file" in out


async def test_a_tool_reads_the_paths_its_yaml_declares_and_cannot_write_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "data.txt").write_text("declared content")
    script = f"cat {tmp_path}/data.txt; echo x > {tmp_path}/new.txt || echo refused"
    tool = sh(script, paths=[str(tmp_path)])
    out = await tool.call(None, {})
    assert "declared content" in out
    assert "refused" in out
    assert not (tmp_path / "new.txt").exists()


async def test_a_tools_tmp_is_private_to_the_call() -> None:
    name = f"pcm-tool-{secrets.token_hex(4)}"
    await sh(f"echo x > /tmp/{name}").call(None, {})
    assert not Path("/tmp", name).exists()
    assert "absent" in await sh(f"test -e /tmp/{name} || echo absent").call(None, {})


@pytest.fixture
def loopback() -> Any:
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


async def test_a_tool_has_no_network_and_network_true_gives_no_direct_route(
    loopback: int,
) -> None:
    probe = (
        "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2); "
        "print('connected')"
    )
    args = ["-c", probe, str(loopback)]
    data = {"name": "net", "command": "python3", "args": args, "timeout": 10}
    with pytest.raises(ToolError, match=r"Connection refused|Network is unreachable"):
        await load_cli_tool(data).call(None, {})
    networked = load_cli_tool({**data, "network": True})  # only through the egress proxy
    try:
        with pytest.raises(ToolError, match=r"Connection refused|Network is unreachable"):
            await networked.call(None, {})
    finally:
        await networked.aclose()


async def test_a_tool_timeout_ends_every_process_of_the_call() -> None:
    marker = "4141.5"
    tool = sh(f"setsid sleep {marker} & (sleep {marker} &) ; sleep 60", timeout=0.5)
    with pytest.raises(ToolError, match="timed out"):
        await tool.call(None, {})
    assert await gone(marker, timeout=10) == []


async def test_a_program_killed_by_a_signal_in_the_jail_says_so() -> None:
    with pytest.raises(ToolError, match="killed by signal SIGTERM"):
        await sh("kill -TERM $$").call(None, {})
