"""``network: true`` tools reach the network only through their egress proxy.

A CLI tool call or a stdio MCP server with ``network: true`` gets a jail with its
own network namespace: a forwarder on the jail's loopback leads to the tool's egress
proxy (which refuses loopback, private and metadata addresses), and nothing else
leads anywhere. A client that ignores the proxy variables (raw sockets, urllib with
proxies off, ``git://``) finds no route to the host's loopback services. The
launcher in front of the tool passes its exit status, output and signals through.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from py_code_mode._private import tool_jail
from py_code_mode.errors import ToolError
from py_code_mode.tools.cli import CliTool
from py_code_mode.tools.mcp import McpTool
from py_code_mode.tools.models import load_cli_tool
from py_code_mode.worker import egress
from tests.tools.test_mcp import FIXTURES as MCP_FIXTURES
from tests.tools.test_mcp import PYTHON, RAW_SERVER, stdio_tool

from ._procs import appears, gone, marked
from .conftest import variant_problem
from .test_mcp_jail import probe_data

REPO_TOOLS = Path(__file__).resolve().parents[2] / "tools"
RAW_CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()\n"
    "    print('connected')\n"
    "except OSError as exc:\n"
    "    print('no route:', exc)\n"
)
NO_PROXY_FETCH = (
    "import sys, urllib.request\n"
    "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
    "try:\n"
    "    print(opener.open(sys.argv[1], timeout=3).read().decode())\n"
    "except OSError as exc:\n"
    "    print('no route:', exc)\n"
)


@pytest.fixture(autouse=True)
def _need_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = variant_problem("subprocess-bwrap")
    if problem is not None:
        pytest.skip(problem)
    monkeypatch.delenv("PY_CODE_MODE_TOOL_JAIL", raising=False)


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the host"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Service:
    """An HTTP service on host loopback that counts the connections it accepted."""

    def __init__(self) -> None:
        self.accepted = 0
        outer = self

        class Counting(ThreadingHTTPServer):
            def get_request(self) -> tuple[socket.socket, Any]:
                request = super().get_request()
                outer.accepted += 1
                return request

        self.server = Counting(("127.0.0.1", 0), _Hello)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def service() -> Iterator[Service]:
    svc = Service()
    svc.thread.start()
    yield svc
    svc.server.shutdown()
    svc.server.server_close()
    svc.thread.join(5)


def python_tool(script: str, *args: str, **extra: Any) -> CliTool:
    data = {"name": "net", "command": "python3", "args": ["-c", script, *args], "timeout": 20}
    return load_cli_tool({**data, "network": True, **extra})


def shipped_curl(**extra: Any) -> CliTool:
    data = yaml.safe_load((REPO_TOOLS / "curl.yaml").read_text())
    return load_cli_tool({**data, **extra})


# -- CLI tools -------------------------------------------------------------------------


async def test_the_shipped_curl_reaches_an_allowed_address_through_the_proxy(
    service: Service,
) -> None:
    curl = shipped_curl(allow_addresses=["127.0.0.1/32"])
    try:
        assert await curl.call("get", {"url": service.url}) == "hello from the host"
    finally:
        await curl.aclose()
    assert service.accepted == 1


@pytest.mark.parametrize("target", ["metadata", "host loopback"])
async def test_curl_through_the_proxy_gets_its_clear_403_for_metadata_and_loopback(
    service: Service, target: str
) -> None:
    url = service.url if target == "host loopback" else "http://169.254.169.254/latest/meta-data/"
    curl = shipped_curl()
    try:
        with pytest.raises(ToolError) as refused:
            await curl.call("get", {"url": url})
    finally:
        await curl.aclose()
    message = str(refused.value)
    assert "403" in message
    assert "the host refused the connection" in message
    assert "which is not a public address" in message
    assert service.accepted == 0


async def test_a_tool_ignoring_the_proxy_finds_no_route_to_host_loopback_or_out(
    service: Service,
) -> None:
    tool = python_tool(RAW_CONNECT, "127.0.0.1", str(service.port))
    outside = python_tool(RAW_CONNECT, "1.1.1.1", "53")
    unproxied = python_tool(NO_PROXY_FETCH, service.url)
    try:
        assert "no route" in await tool.call(None, {})
        assert "no route" in await outside.call(None, {})
        assert "no route" in await unproxied.call(None, {})
    finally:
        for t in (tool, outside, unproxied):
            await t.aclose()
    assert service.accepted == 0


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
async def test_git_over_git_protocol_cannot_reach_a_host_loopback_port(service: Service) -> None:
    data = {
        "name": "git",
        "command": "git",
        "args": ["ls-remote", f"git://127.0.0.1:{service.port}/x"],
        "timeout": 20,
        "network": True,
    }
    tool = load_cli_tool(data)
    try:
        with pytest.raises(ToolError, match=r"unable to connect|Connection refused"):
            await tool.call(None, {})
    finally:
        await tool.aclose()
    assert service.accepted == 0


async def test_the_jail_sees_only_the_forwarder_proxy_and_no_name_resolution() -> None:
    script = (
        "import os, socket\n"
        "print(*sorted({os.environ[k] for k in ('http_proxy', 'https_proxy', 'HTTP_PROXY',"
        " 'HTTPS_PROXY', 'ALL_PROXY')}), sep=',')\n"
        "print('NO_PROXY' in os.environ or 'no_proxy' in os.environ)\n"
        "try:\n"
        "    socket.getaddrinfo('example.org', 443)\n"
        "    print('resolved')\n"
        "except OSError:\n"
        "    print('no dns')\n"
    )
    tool = python_tool(script, env={"NO_PROXY": "*"})
    try:
        lines = (await tool.call(None, {})).splitlines()
    finally:
        await tool.aclose()
    urls = lines[0].split(",")
    assert len(urls) == 1
    assert urls[0].startswith("http://127.0.0.1:")
    assert lines[1:] == ["False", "no dns"]


async def test_exit_status_stdout_and_stderr_pass_through_the_launcher() -> None:
    tool = load_cli_tool(
        {
            "name": "sh",
            "command": "sh",
            "args": ["-c", "echo out; echo err >&2; exit 7"],
            "network": True,
            "timeout": 20,
            "success_exit_codes": [0, 7],
        }
    )
    failing = load_cli_tool(
        {"name": "sh", "command": "sh", "args": ["-c", "echo err >&2; exit 7"], "network": True}
    )
    killed = load_cli_tool(
        {"name": "sh", "command": "sh", "args": ["-c", "kill -TERM $$"], "network": True}
    )
    try:
        assert await tool.call(None, {}) == "out\n"
        with pytest.raises(ToolError, match="failed with exit code 7: err"):
            await failing.call(None, {})
        with pytest.raises(ToolError, match="killed by signal SIGTERM"):
            await killed.call(None, {})
    finally:
        for t in (tool, failing, killed):
            await t.aclose()


async def test_a_timeout_ends_the_launcher_and_every_process_of_the_call() -> None:
    marker = f"4{secrets.randbelow(1000)}.{secrets.randbelow(1000) + 1}"
    tool = load_cli_tool(
        {
            "name": "sh",
            "command": "sh",
            "args": ["-c", f"(sleep {marker} &); sleep {marker}"],
            "network": True,
            "timeout": 1,
        }
    )
    try:
        with pytest.raises(ToolError, match="timed out"):
            await tool.call(None, {})
    finally:
        await tool.aclose()
    assert await gone(marker, timeout=10) == []


def test_the_launcher_forwards_a_signal_to_the_tool_and_exits_with_its_status(
    tmp_path: Path,
) -> None:
    script = "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done"
    launch = [sys.executable, "-I", "-S", egress.__file__, "--socket", str(tmp_path / "s")]
    launcher = subprocess.Popen(
        [*launch, "--", "sh", "-c", script],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert launcher.stdout is not None
        assert launcher.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 10  # until the launcher relays (a signal before ends it)
        while time.monotonic() < deadline and not _catches(launcher.pid, signal.SIGTERM):
            time.sleep(0.01)
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(10) == 3
        assert launcher.stdout.read() == "got-term\n"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(10)


def _catches(pid: int, signum: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_the_launcher_refuses_a_malformed_command_line_with_its_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-S", egress.__file__, "--", "true"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 2
    assert "usage: egress.py --socket PATH -- COMMAND" in done.stderr


def test_tool_arguments_shaped_like_launcher_options_reach_the_tool_verbatim(
    tmp_path: Path,
) -> None:
    smuggled = ["--socket", "/elsewhere", "--", "-I", "--help", "-c", "x"]
    launch = [sys.executable, "-I", "-S", egress.__file__, "--socket", str(tmp_path / "s")]
    tool = [sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))"]
    done = subprocess.run(
        [*launch, "--", *tool, *smuggled],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == json.dumps(smuggled)


# -- stdio MCP servers -------------------------------------------------------------------


@pytest.fixture
async def mcp_probe() -> AsyncIterator[McpTool]:
    tool = McpTool.from_mapping(probe_data(network=True, allow_addresses=["127.0.0.1"]))
    try:
        yield tool
    finally:
        await tool.aclose()


async def test_an_mcp_server_fetches_through_the_proxy_but_raw_sockets_find_no_route(
    mcp_probe: McpTool, service: Service
) -> None:
    assert await mcp_probe.call("fetch", {"url": service.url}) == "hello from the host"
    assert service.accepted == 1
    raw = await mcp_probe.call("connect", {"host": "127.0.0.1", "port": service.port})
    assert raw.startswith("ERROR:"), raw
    outside = await mcp_probe.call("connect", {"host": "1.1.1.1", "port": 53})
    assert outside.startswith("ERROR:"), outside
    assert service.accepted == 1


async def test_an_mcp_server_gets_the_proxys_403_for_metadata_and_loopback(
    service: Service,
) -> None:
    tool = McpTool.from_mapping(probe_data(network=True))
    try:
        for url in ("http://169.254.169.254/latest/meta-data/", service.url):
            refused = await tool.call("fetch", {"url": url})
            assert refused.startswith("ERROR: HTTPError: HTTP Error 403"), refused
    finally:
        await tool.aclose()
    assert service.accepted == 0


async def test_an_mcp_servers_proxy_socket_is_private_and_removed_on_close() -> None:
    tool = McpTool.from_mapping(probe_data(network=True))
    try:
        assert (await tool.call("connect", {"host": "127.0.0.1", "port": 1})).startswith("ERROR")
        assert tool._proxy is not None
        path = Path(await tool._proxy.unix_socket())
        assert path.is_socket()
        assert os.stat(path.parent).st_mode & 0o777 == 0o700
    finally:
        await tool.aclose()
    assert not path.exists()
    assert not path.parent.exists()


async def test_unjailed_a_network_tool_keeps_the_host_network_and_the_proxy_variables(
    monkeypatch: pytest.MonkeyPatch, service: Service
) -> None:
    monkeypatch.setenv("PY_CODE_MODE_TOOL_JAIL", "off")
    script = "import os; print(os.environ['https_proxy'])"
    tool = python_tool(script)
    curl = shipped_curl()
    try:
        assert (await tool.call(None, {})).startswith("http://127.0.0.1:")
        with pytest.raises(ToolError, match="the host refused the connection"):
            await curl.call("get", {"url": service.url})
        assert tool._proxy is not None
        assert tool._proxy._socket_dir is None  # no socket for a call that isn't jailed
    finally:
        await tool.aclose()
        await curl.aclose()
    assert service.accepted == 0


async def test_the_mcp_protocol_passes_through_the_launcher_untouched() -> None:
    demo = stdio_tool(network=True, timeout=1)
    raw = McpTool.from_mapping(
        {
            "name": "raw",
            "type": "mcp",
            "command": PYTHON,
            "args": [str(RAW_SERVER)],
            "paths": [str(MCP_FIXTURES)],
            "network": True,
            "timeout": 20,
        }
    )
    try:
        assert await demo.call("add", {"a": 2, "b": 3}) == {"total": 5, "terms": [2, 3]}
        first, echoed, second = await asyncio.gather(
            demo.call("pid", {}), demo.call("echo", {"message": "x"}), demo.call("pid", {})
        )
        assert (echoed, second) == ("x", first)
        with pytest.raises(ToolError, match=r"no answer within timeout \(1 s\)"):
            await demo.call("sleep", {"seconds": 30})
        assert await demo.call("pid", {}) == first  # the same server, behind the launcher
        assert await raw.call("garbage", {}) == "after the garbage"  # bytes not re-encoded
    finally:
        await demo.aclose()
        await raw.aclose()


async def test_closing_a_networked_mcp_tool_ends_the_launcher_and_the_servers_tree() -> None:
    marker = f"{4000 + secrets.randbelow(1000)}.{secrets.randbelow(10**6)}"
    tool = McpTool.from_mapping(probe_data(network=True))
    try:
        assert await tool.call("spawn", {"marker": marker}) == "spawned"
        assert tool._proxy is not None
        launcher = (
            f"{os.path.realpath(egress.__file__)}\0--socket\0{await tool._proxy.unix_socket()}"
        )
        assert await appears(marker), "the detached child should run while the tool is open"
        assert marked(launcher), "the launcher should run in front of the server"
    finally:
        await tool.aclose()
    assert await gone(marker) == []
    assert await gone(launcher) == []


async def test_without_a_system_python3_the_launcher_runs_on_the_hosts_interpreter(
    monkeypatch: pytest.MonkeyPatch, service: Service
) -> None:
    monkeypatch.setattr(tool_jail, "_SYSTEM_PYTHON", "/nonexistent/python3")
    tool_jail._launcher_python.cache_clear()
    curl = shipped_curl(allow_addresses=["127.0.0.1/32"])
    try:
        assert await curl.call("get", {"url": service.url}) == "hello from the host"
        python = tool_jail._launcher_python()[0]
    finally:
        await curl.aclose()
        tool_jail._launcher_python.cache_clear()
    assert python == os.path.realpath(getattr(sys, "_base_executable", sys.executable))
