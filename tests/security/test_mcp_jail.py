"""Stdio MCP servers run jailed: a server that does whatever agent code asks stays contained.

The probe server (fixtures/mcp_probe_server.py) reads any path, fetches any URL and
connects anywhere it is told, as a third-party server with a path-traversal or SSRF
bug would. Agent code chooses those arguments; the jail decides what they reach.
"""

from __future__ import annotations

import logging
import secrets
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from py_code_mode import FileStorage, Session
from py_code_mode._private import jail, tool_jail
from py_code_mode.errors import ConfigError, ToolError
from py_code_mode.execution import InProcessConfig, InProcessExecutor
from py_code_mode.tools.mcp import McpTool

from ._procs import appears, gone
from .conftest import Host, variant_problem

FIXTURES = Path(__file__).parent / "fixtures"
PROBE = FIXTURES / "mcp_probe_server.py"


@pytest.fixture(autouse=True)
def _need_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = variant_problem("subprocess-bwrap")
    if problem is not None:
        pytest.skip(problem)
    monkeypatch.delenv("PY_CODE_MODE_TOOL_JAIL", raising=False)


def probe_data(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "probe",
        "type": "mcp",
        "command": sys.executable,
        "args": [str(PROBE)],
        "timeout": 20,
        "connect_timeout": 30,
    }
    data["paths"] = [str(FIXTURES), *extra.pop("paths", [])]
    return {**data, **extra}


@pytest.fixture
async def probe() -> AsyncIterator[McpTool]:
    tool = McpTool.from_mapping(probe_data())
    try:
        yield tool
    finally:
        await tool.aclose()


async def test_host_secrets_are_out_of_reach_of_a_server_that_reads_any_path(
    probe: McpTool, host: Host
) -> None:
    targets = [
        "/etc/shadow",
        str(host.home_canary_path),
        str(host.storage / f"canary-{host.token}.txt"),
        "/var/run/docker.sock",
    ]
    for path in targets:
        out = await probe.call("read_file", {"path": path})
        assert out.startswith("ERROR: FileNotFoundError"), (path, out)
    for path in ("/proc/1/environ", "/proc/self/environ"):
        out = await probe.call("read_file", {"path": path})
        assert host.env_canary not in out
    assert await probe.call("read_file", {"path": "/etc/os-release"})  # the system is there


async def test_the_docker_socket_and_host_loopback_are_unreachable(
    probe: McpTool, host: Host
) -> None:
    out = await probe.call("connect_unix", {"path": "/var/run/docker.sock"})
    assert out.startswith("ERROR:"), out
    before = len(host.connections)
    out = await probe.call("connect", {"host": "127.0.0.1", "port": host.port})
    assert out.startswith("ERROR:"), out
    out = await probe.call("fetch", {"url": f"http://127.0.0.1:{host.port}/"})
    assert out.startswith("ERROR:"), out
    out = await probe.call("fetch", {"url": "http://example.com/"})
    assert out.startswith("ERROR:"), out  # no network at all: not even DNS
    assert len(host.connections) == before


async def test_a_declared_path_is_readable_and_writable_only_when_declared_so(
    tmp_path: Path,
) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    (data / "in.txt").write_text("declared content")
    tool = McpTool.from_mapping(
        probe_data(paths=[str(data)], writable_paths=[str(out)], cwd=str(data))
    )
    try:
        assert await tool.call("read_file", {"path": str(data / "in.txt")}) == "declared content"
        assert await tool.call("read_file", {"path": "in.txt"}) == "declared content"  # cwd
        refused = await tool.call("write_file", {"path": str(data / "new.txt"), "text": "x"})
        assert refused.startswith("ERROR: OSError"), refused  # read-only file system
        assert not (data / "new.txt").exists()
        written = await tool.call("write_file", {"path": str(out / "new.txt"), "text": "made"})
        assert written == "written"
        assert (out / "new.txt").read_text() == "made"
        # Undeclared neighbours stay invisible, and /tmp is the jail's own.
        outside = await tool.call("read_file", {"path": str(tmp_path / "data" / ".." / "x")})
        assert outside.startswith("ERROR: FileNotFoundError")
        name = f"pcm-mcp-{secrets.token_hex(4)}"
        assert await tool.call("write_file", {"path": f"/tmp/{name}", "text": "x"}) == "written"
        assert not Path("/tmp", name).exists()
    finally:
        await tool.aclose()


async def test_a_symbolic_link_in_a_declared_path_does_not_lead_out_of_the_jail(
    tmp_path: Path, host: Host
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "canary").symlink_to(host.home_canary_path)
    (out / "shadow").symlink_to("/etc/shadow")
    (out / "escape").symlink_to(tmp_path / "outside.txt")
    tool = McpTool.from_mapping(probe_data(writable_paths=[str(out)]))
    try:
        for name in ("canary", "shadow"):
            read = await tool.call("read_file", {"path": str(out / name)})
            assert read.startswith("ERROR: FileNotFoundError"), (name, read)
        # The link resolves inside the jail: at most into its private /tmp, never the host's.
        await tool.call("write_file", {"path": str(out / "escape"), "text": "x"})
        assert not (tmp_path / "outside.txt").exists()
    finally:
        await tool.aclose()


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from loopback"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


async def test_network_true_goes_through_the_egress_proxy_and_its_address_checks(
    web: int,
) -> None:
    url = f"http://127.0.0.1:{web}/"
    offline = McpTool.from_mapping(probe_data())
    proxied = McpTool.from_mapping(probe_data(network=True))
    allowed = McpTool.from_mapping(probe_data(network=True, allow_addresses=["127.0.0.1"]))
    try:
        assert (await offline.call("fetch", {"url": url})).startswith("ERROR: URLError")
        refused = await proxied.call("fetch", {"url": url})
        assert refused.startswith("ERROR: HTTPError: HTTP Error 403"), refused
        assert await allowed.call("fetch", {"url": url}) == "hello from loopback"
    finally:
        for tool in (offline, proxied, allowed):
            await tool.aclose()


async def test_the_servers_whole_process_tree_ends_with_the_session(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "probe.yaml").write_text(yaml.safe_dump(probe_data()))
    marker = f"{4000 + secrets.randbelow(1000)}.{secrets.randbelow(10**6)}"
    executor = InProcessExecutor(InProcessConfig(tools_path=tools))
    async with Session(storage=FileStorage(tmp_path / "data"), executor=executor) as session:
        result = await session.run(f"tools.probe.spawn(marker={marker!r})", timeout=60)
        assert result.error is None, result.error
        assert await appears(marker), "the detached child should run while the session does"
    assert await gone(marker) == []


async def test_a_server_that_fails_in_the_jail_says_so_and_how_to_open_it(
    tmp_path: Path,
) -> None:
    script = tmp_path / "server.py"
    script.write_text("print('never reached')\n")
    tool = McpTool.from_mapping(
        {"name": "hidden", "type": "mcp", "command": sys.executable, "args": [str(script)]}
    )
    try:
        with pytest.raises(ToolError) as caught:
            await tool.callables()
    finally:
        await tool.aclose()
    message = str(caught.value)
    assert "tool 'hidden': cannot connect to the MCP server" in message
    assert "bubblewrap jail" in message
    for fix in ("paths: [DIR]", "writable_paths: [DIR]", "network: true", "jail: false"):
        assert fix in message
    assert "can't open file" in message  # the tail of the server's stderr
    assert "can't open file" in caught.value.stderr


async def test_jail_false_runs_the_server_unjailed_with_a_warning(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        tool = McpTool.from_mapping(probe_data(jail=False))
    assert "runs its server WITHOUT a jail (`jail: false`" in caplog.text
    try:
        out = await tool.call("read_file", {"path": str(host.home_canary_path)})
        assert out == host.home_canary
    finally:
        await tool.aclose()


async def test_without_bwrap_the_server_runs_unjailed_with_one_warning(
    host: Host, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    detail = f"bubblewrap (bwrap) is not installed ({secrets.token_hex(4)})"
    monkeypatch.setattr(jail, "probe", lambda: jail.JailProbe(None, False, detail))
    tools = [McpTool.from_mapping(probe_data()) for _ in range(2)]
    try:
        with caplog.at_level(logging.WARNING):
            for tool in tools:
                out = await tool.call("read_file", {"path": str(host.home_canary_path)})
                assert out == host.home_canary
        warnings = [r for r in caplog.records if detail in r.getMessage()]
        assert len(warnings) == 1
        assert "stdio MCP servers run WITHOUT a jail" in warnings[0].getMessage()
    finally:
        for tool in tools:
            await tool.aclose()
        tool_jail._warned.discard(detail)


def test_a_working_directory_outside_the_declared_paths_is_refused_at_load(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"cwd: .* is not inside the tool's declared paths"):
        McpTool.from_mapping(probe_data(cwd=str(tmp_path)))
    McpTool.from_mapping(probe_data(cwd=str(tmp_path), jail=False))  # no jail: no rule
