"""MCP tools against real MCP servers: a small SDK server over stdio, streamable HTTP
and SSE, and py-code-mode's own MCP server used as a tool of another session.

The file runs under the mcp SDK 2.x (the main run) and 1.21 (.ci/mcp1.sh), and
PY_CODE_MODE_TEST_MCP_SERVER_PYTHON picks the python that runs the servers:
.ci/mcp1.sh also runs a 1.x client against 2.x servers (the mix users of 1.x
frameworks meet) and a 2.x client against 1.x servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import py_code_mode
from py_code_mode import FileStorage, Session
from py_code_mode.errors import ConfigError, ToolError, ToolNotFoundError
from py_code_mode.execution import InProcessConfig, InProcessExecutor
from py_code_mode.search.ranker import LexicalRanker
from py_code_mode.tools.mcp import McpTool, parameters_from_schema
from py_code_mode.tools.registry import ToolRegistry, tool_search_document
from tests._tcp import free_port

FIXTURES = Path(__file__).parent / "fixtures"
DEMO_SERVER = FIXTURES / "mcp_demo_server.py"
RAW_SERVER = FIXTURES / "mcp_raw_server.py"
PYTHON = os.environ.get("PY_CODE_MODE_TEST_MCP_SERVER_PYTHON") or sys.executable
"""The python that runs the test servers (the tests' own unless .ci/mcp1.sh says)."""
START_TIMEOUT = 30.0


def stdio_yaml(name: str = "demo", extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
        name: {name}
        description: A demo MCP server for tests
        type: mcp
        transport: stdio
        command: {PYTHON}
        args: ["{DEMO_SERVER}"]
        paths: ["{FIXTURES}"]
        timeout: 20
        """
    ) + textwrap.dedent(extra)


def stdio_tool(**overrides: Any) -> McpTool:
    data: dict[str, Any] = {
        "name": "demo",
        "type": "mcp",
        "command": PYTHON,
        "args": [str(DEMO_SERVER)],
        "paths": [str(FIXTURES)],  # the server runs jailed: its script must be visible
        "timeout": 20,
        **overrides,
    }
    return McpTool.from_mapping(data)


@pytest.fixture
async def demo() -> AsyncIterator[McpTool]:
    tool = stdio_tool()
    try:
        yield tool
    finally:
        await tool.aclose()


def start_server(transport: str, port: int) -> subprocess.Popen[bytes]:
    """Start the demo server on ``port`` and wait (bounded) until it accepts connections."""
    process = subprocess.Popen(
        [PYTHON, str(DEMO_SERVER), transport, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the demo server exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError(f"the demo server did not listen on port {port} in {START_TIMEOUT} s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@pytest.fixture
def http_server() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A streamable-HTTP demo server; the list holds it (tests may replace it)."""
    port = free_port()
    processes = [start_server("streamable-http", port)]
    try:
        yield port, processes
    finally:
        for process in processes:
            stop_server(process)


async def wait_gone(pid: int, timeout: float = 15.0) -> bool:
    """True once no process ``pid`` exists (reaped, not a zombie) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        await asyncio.sleep(0.05)
    return False


# -- listing -------------------------------------------------------------------------


async def test_each_server_tool_becomes_a_callable_with_its_input_schema(
    tmp_path: Path,
) -> None:
    (tmp_path / "demo.yaml").write_text(stdio_yaml())
    registry = await ToolRegistry.from_directory(tmp_path)
    try:
        assert registry.problems == []
        [entry] = await registry.list()
        assert entry["kind"] == "mcp"
        assert entry["description"] == "A demo MCP server for tests"
        callables = {c["name"]: c for c in entry["callables"]}
        assert {"echo", "add", "get_env", "fail", "pid", "sleep", "crash"} <= set(callables)
        add = callables["add"]
        assert add["description"] == "Add two integers and report the total."
        assert add["input_schema"]["required"] == ["a", "b"]
        assert add["parameters"]["a"] == {
            "type": "integer",
            "description": "",
            "required": True,
            "default": None,
        }
        echo = callables["echo"]["parameters"]
        assert echo["times"]["required"] is False
        assert echo["times"]["default"] == 1
    finally:
        await registry.aclose()


async def test_server_tools_are_found_by_search(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_text(stdio_yaml())
    registry = await ToolRegistry.from_directory(tmp_path)
    try:
        documents = [tool_search_document(entry) for entry in await registry.list()]
        [hit] = await LexicalRanker().rank("add integers total", documents, limit=10)
        assert hit.id == "demo"
        assert "callables" in hit.why or "description" in hit.why
    finally:
        await registry.aclose()


async def test_a_tool_name_that_is_not_an_identifier_gets_a_python_name(demo: McpTool) -> None:
    specs = {spec.name: spec for spec in await demo.callables()}
    assert "get-env" not in specs
    assert "(MCP tool 'get-env')" in specs["get_env"].description
    assert await demo.call("get_env", {"name": "PATH"}) == os.environ["PATH"]
    assert await demo.call("get-env", {"name": "PATH"}) == os.environ["PATH"]


def test_parameters_come_from_the_schema_properties_required_first() -> None:
    schema = {
        "type": "object",
        "properties": {
            "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
            "query": {"type": "string", "description": " what to look for "},
            "tags": {"type": ["array", "null"]},
            "mode": {"enum": ["a", "b"]},
        },
        "required": ["query"],
    }
    parameters = parameters_from_schema(schema)
    assert [p.name for p in parameters] == ["query", "limit", "tags", "mode"]
    assert parameters[0].required
    assert parameters[0].description == "what to look for"
    assert parameters[1].type == "integer|null"
    assert parameters[2].type == "array|null"
    assert parameters[3].type == "enum"
    assert parameters_from_schema({"type": "object"}) == ()


# -- calling -------------------------------------------------------------------------


async def test_structured_content_comes_back_as_python_data(demo: McpTool) -> None:
    assert await demo.call("add", {"a": 2, "b": 3}) == {"total": 5, "terms": [2, 3]}


async def test_a_plain_value_wrapped_under_result_comes_back_plain(demo: McpTool) -> None:
    product = await demo.call("multiply", {"a": 6, "b": 7})
    assert product == 42
    assert product + 1 == 43


async def test_a_tool_without_structured_content_returns_its_text(demo: McpTool) -> None:
    assert await demo.call("echo", {"message": "hi", "times": 2}) == "hi hi"


async def test_content_other_than_text_is_summarised(demo: McpTool) -> None:
    text = await demo.call("picture", {})
    assert text.startswith("a red dot:\n[image: image/png, about ")


async def test_audio_links_and_embedded_resources_are_summarised_or_inlined(
    demo: McpTool,
) -> None:
    assert await demo.call("attachments", {}) == (
        "[audio: audio/wav, about 6 bytes]\n"
        "[resource link: file:///notes.txt]\n"
        "inline text\n"
        "[resource: file:///b.bin, application/octet-stream]"
    )


async def test_a_paginated_tool_list_is_read_to_the_end_and_a_json_rpc_error_is_reported() -> None:
    tool = McpTool.from_mapping(
        {
            "name": "raw",
            "type": "mcp",
            "command": PYTHON,
            "args": [str(RAW_SERVER)],
            "paths": [str(FIXTURES)],
        }
    )
    try:
        assert [spec.name for spec in await tool.callables()] == ["quota", "ok", "garbage"]
        assert await tool.call("ok", {}) == "ok from page 2"
        with pytest.raises(
            ToolError,
            match=r"MCP tool 'quota': the server answered with error -32001: quota exceeded",
        ):
            await tool.call("quota", {})
    finally:
        await tool.aclose()


async def test_a_stdio_line_that_is_not_utf8_is_skipped_and_the_answer_still_arrives() -> None:
    tool = McpTool.from_mapping(
        {
            "name": "raw",
            "type": "mcp",
            "command": PYTHON,
            "args": [str(RAW_SERVER)],
            "paths": [str(FIXTURES)],
            "timeout": 20,
        }
    )
    try:
        assert await tool.call("ok", {}) == "ok from page 2"
        connection = tool._connection
        assert await tool.call("garbage", {}) == "after the garbage"
        assert await tool.call("ok", {}) == "ok from page 2"
        assert tool._connection is connection  # the same session, not a reconnection
    finally:
        await tool.aclose()


async def test_a_tool_error_raises_tool_error_with_the_servers_message(demo: McpTool) -> None:
    with pytest.raises(ToolError, match="failing on purpose: disk full") as caught:
        await demo.call("fail", {"reason": "disk full"})
    assert caught.value.tool == "demo"
    assert "MCP tool 'fail'" in str(caught.value)


async def test_missing_required_arguments_are_named(demo: McpTool) -> None:
    with pytest.raises(ToolError, match=r"MCP tool 'add': missing required argument\(s\) 'b'"):
        await demo.call("add", {"a": 1})


async def test_arguments_of_the_wrong_type_are_reported_by_the_server(demo: McpTool) -> None:
    with pytest.raises(ToolError, match=r"(?s)MCP tool 'add' failed: .*validation error.*\bb\b"):
        await demo.call("add", {"a": 1, "b": "two"})


async def test_arguments_that_are_not_json_data_are_refused(demo: McpTool) -> None:
    with pytest.raises(ToolError, match="arguments must be JSON data"):
        await demo.call("echo", {"message": object()})
    with pytest.raises(ToolError, match="arguments must be JSON data"):
        await demo.call("echo", {"message": float("nan")})


async def test_an_unknown_server_tool_lists_the_available_ones(demo: McpTool) -> None:
    with pytest.raises(ToolNotFoundError, match=r"no tool 'nope'; available: echo, add"):
        await demo.call("nope", {})


async def test_calling_the_server_itself_says_how_to_call_its_tools(demo: McpTool) -> None:
    with pytest.raises(ToolError, match=r"call one of its tools as tools\.demo\.<tool>"):
        await demo.call(None, {})


async def test_a_lone_surrogate_argument_is_refused_without_restarting_the_server(
    demo: McpTool,
) -> None:
    first = await demo.call("pid", {})
    with pytest.raises(ToolError, match="arguments must be JSON data"):
        await demo.call("echo", {"message": "a\ud800b"})
    assert await demo.call("pid", {}) == first


async def test_a_call_slower_than_the_timeout_fails_and_the_connection_stays_usable() -> None:
    tool = stdio_tool(timeout=1)
    try:
        first = await tool.call("pid", {})
        with pytest.raises(ToolError, match=r"no answer within timeout \(1 s\)"):
            await tool.call("sleep", {"seconds": 30})
        assert await tool.call("pid", {}) == first
    finally:
        await tool.aclose()


async def test_concurrent_calls_share_one_connection(demo: McpTool) -> None:
    results = await asyncio.gather(
        demo.call("sleep", {"seconds": 0.3}),
        demo.call("pid", {}),
        demo.call("echo", {"message": "x"}),
        demo.call("pid", {}),
    )
    assert results[0] == "slept"
    assert results[1] == results[3]
    assert results[2] == "x"


async def test_a_cancelled_call_does_not_break_the_connection(demo: McpTool) -> None:
    first = await demo.call("pid", {})
    task = asyncio.create_task(demo.call("sleep", {"seconds": 30}))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await demo.call("pid", {}) == first


# -- connection lifecycle ------------------------------------------------------------


async def test_nothing_starts_until_first_use_and_calls_reuse_the_connection() -> None:
    tool = stdio_tool()
    try:
        assert tool._connection is None  # loading a file must not start servers
        first = await tool.call("pid", {})
        assert await tool.call("pid", {}) == first
        assert (await tool.callables())[0].name == "echo"
        assert await tool.call("pid", {}) == first
    finally:
        await tool.aclose()


@pytest.mark.usefixtures("tool_jail_off")  # host pids: see tests/security
async def test_aclose_stops_the_server_process_and_is_idempotent() -> None:
    tool = stdio_tool()
    pid = (await tool.call("pid", {}))["pid"]
    await tool.aclose()
    assert await wait_gone(pid)
    await tool.aclose()
    with pytest.raises(ToolError, match="closed"):
        await tool.call("pid", {})


@pytest.mark.usefixtures("tool_jail_off")  # host pids: see tests/security
async def test_a_killed_server_is_restarted_by_the_next_call(demo: McpTool) -> None:
    pid = (await demo.call("pid", {}))["pid"]
    os.kill(pid, signal.SIGKILL)
    assert await wait_gone(pid)
    new_pid = (await demo.call("pid", {}))["pid"]
    assert new_pid != pid
    assert await demo.call("add", {"a": 1, "b": 1}) == {"total": 2, "terms": [1, 1]}


@pytest.mark.usefixtures("tool_jail_off")  # host pids: see tests/security
async def test_a_call_that_kills_its_server_fails_clearly_and_the_next_call_reconnects(
    demo: McpTool,
) -> None:
    pid = (await demo.call("pid", {}))["pid"]
    with pytest.raises(ToolError, match="lost the connection to the MCP server") as caught:
        await demo.call("crash", {})
    assert "demo server starting on stdio" in caught.value.stderr
    assert (await demo.call("pid", {}))["pid"] != pid
    assert await wait_gone(pid)


async def test_a_server_that_exits_at_start_is_reported_with_its_stderr(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: broken
            type: mcp
            command: {PYTHON}
            args: ["-c", "import sys; sys.exit('no server here, sorry')"]
            """
        )
    )
    registry = await ToolRegistry.from_directory(tmp_path)
    try:
        [entry] = await registry.list()
        assert entry["callables"] == []
        assert "cannot connect to the MCP server" in entry["error"]
        assert "no server here, sorry" in entry["error"]
        with pytest.raises(ToolError, match="no server here, sorry"):
            await registry.call("broken", "anything", {})
    finally:
        await registry.aclose()


async def test_a_missing_command_is_reported_when_the_tool_is_used() -> None:
    tool = McpTool.from_mapping({"name": "ghost", "type": "mcp", "command": "/nonexistent/srv"})
    with pytest.raises(ToolError, match=r"command not found \(/nonexistent/srv\)"):
        await tool.callables()
    await tool.aclose()


@pytest.mark.usefixtures("tool_jail_off")  # host pids: see tests/security
async def test_a_server_that_never_answers_times_out_and_is_stopped() -> None:
    tool = McpTool.from_mapping(
        {"name": "mute", "type": "mcp", "command": "sleep", "args": ["300"], "connect_timeout": 1}
    )
    try:
        with pytest.raises(ToolError, match=r"no answer within connect_timeout \(1 s\)"):
            await tool.callables()
    finally:
        await tool.aclose()
    assert _children_running(["sleep", "300"]) == []


def _children_running(argv: list[str]) -> list[int]:
    """Processes with exactly this command line whose parent is this test process."""
    wanted = ("\0".join(argv) + "\0").encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            status = (entry / "status").read_text()
        except OSError:
            continue
        parent = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("PPid:")), "")
        if cmdline == wanted and parent == str(os.getpid()):
            found.append(int(entry.name))
    return found


# -- environment and secrets ---------------------------------------------------------


async def test_env_values_expand_from_the_host_and_nothing_else_is_inherited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_SECRET_SOURCE", "from-the-host-1234")
    monkeypatch.setenv("DEMO_NOT_PASSED", "should-not-leak")
    tool = stdio_tool(env={"DEMO_SECRET": "${DEMO_SECRET_SOURCE}", "PLAIN": "x$y"})
    try:
        assert await tool.call("get_env", {"name": "DEMO_SECRET"}) == (
            "${DEMO_SECRET_SOURCE}"  # sent, then masked
        )
        assert await tool.call("get_env", {"name": "PLAIN"}) == "x$y"
        assert await tool.call("get_env", {"name": "DEMO_NOT_PASSED"}) == "<unset>"
    finally:
        await tool.aclose()


async def test_an_expanded_secret_is_masked_in_error_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_TOKEN", "tok-abcdef-123456")
    tool = stdio_tool(env={"TOKEN": "${DEMO_TOKEN}"})
    try:
        with pytest.raises(ToolError) as caught:
            await tool.call("fail", {"reason": "bad token tok-abcdef-123456"})
        assert "tok-abcdef-123456" not in str(caught.value)
        assert "bad token ${DEMO_TOKEN}" in str(caught.value)
    finally:
        await tool.aclose()


def test_a_missing_variable_is_a_config_error_naming_the_field_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DEMO_MISSING_VAR", raising=False)
    with pytest.raises(ConfigError, match=r"env\.KEY: environment variable 'DEMO_MISSING_VAR'"):
        stdio_tool(env={"KEY": "${DEMO_MISSING_VAR}"})
    with pytest.raises(ConfigError, match=r"headers\.Authorization: .*'DEMO_MISSING_VAR'"):
        McpTool.from_mapping(
            {
                "name": "web",
                "type": "mcp",
                "url": "http://127.0.0.1:1/mcp",
                "headers": {"Authorization": "Bearer ${DEMO_MISSING_VAR}"},
            }
        )
    with pytest.raises(ConfigError, match=r"args\[0\]: malformed variable reference"):
        stdio_tool(args=["${not closed"])


def test_a_doubled_dollar_keeps_a_literal_reference() -> None:
    tool = stdio_tool(args=["$${HOME}", str(DEMO_SERVER)])
    assert tool.spec.args[0] == "${HOME}"


# -- bad tool files ------------------------------------------------------------------


BAD_FILES = {
    "no_command.yaml": (
        "name: a\ntype: mcp\ntransport: stdio\n",
        "transport stdio needs `command`",
    ),
    "no_url.yaml": ("name: b\ntype: mcp\ntransport: sse\n", "transport sse needs `url`"),
    "mixed.yaml": (
        "name: c\ntype: mcp\ncommand: x\nurl: http://h/mcp\n",
        "url: not used by transport stdio",
    ),
    "http_with_env.yaml": (
        "name: d\ntype: mcp\nurl: http://h/mcp\nenv: {A: b}\n",
        "env: not used by transport streamable-http",
    ),
    "typo.yaml": ("name: e\ntype: mcp\ncommand: x\ncomand: y\n", "comand: Extra inputs"),
    "transport.yaml": (
        "name: f\ntype: mcp\ntransport: websocket\nurl: http://h\n",
        "transport: Input should be 'stdio', 'sse' or 'streamable-http'",
    ),
    "scheme.yaml": ("name: g\ntype: mcp\nurl: ftp://h/mcp\n", "url: expected an http://"),
    "timeout.yaml": ("name: h\ntype: mcp\ncommand: x\ntimeout: 0\n", "timeout: Input should be"),
    "missing_var.yaml": (
        "name: i\ntype: mcp\ncommand: x\nenv: {K: '${DEMO_SURELY_UNSET_VAR}'}\n",
        "env.K: environment variable 'DEMO_SURELY_UNSET_VAR' is not set",
    ),
    "http_with_jail_keys.yaml": (
        "name: j\ntype: mcp\nurl: http://h/mcp\npaths: [/srv]\nnetwork: true\n",
        "paths, network: not used by transport streamable-http",
    ),
    "nul_path.yaml": (
        'name: k\ntype: mcp\ncommand: x\nwritable_paths: ["/srv\\0/etc"]\n',
        "writable_paths: item 0 contains a NUL character",
    ),
    "undeclared_cwd.yaml": (
        "name: l\ntype: mcp\ncommand: x\ncwd: /srv/data\npaths: [/srv/other]\n",
        "cwd: '/srv/data' is not inside the tool's declared paths (/srv/other)",
    ),
    "bad_range.yaml": (
        "name: m\ntype: mcp\ncommand: x\nnetwork: true\nallow_addresses: [intranet]\n",
        "'intranet' is not an IP address or range",
    ),
}


async def test_bad_mcp_files_are_problems_and_the_good_one_still_loads(tmp_path: Path) -> None:
    for name, (text, _) in BAD_FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "demo.yaml").write_text(stdio_yaml())
    registry = await ToolRegistry.from_directory(tmp_path)
    try:
        assert registry.names() == ["demo"]
        problems = {Path(p.path).name: p.message for p in registry.problems}
        assert set(problems) == set(BAD_FILES)
        for name, (_, expected) in BAD_FILES.items():
            assert expected in problems[name], (name, problems[name])
        assert await registry.call("demo", "echo", {"message": "ok"}) == "ok"
    finally:
        await registry.aclose()


def test_the_transport_is_inferred_from_command_or_url() -> None:
    assert stdio_tool().spec.transport == "stdio"
    web = McpTool.from_mapping({"name": "w", "type": "mcp", "url": "http://127.0.0.1:9/mcp"})
    assert web.spec.transport == "streamable-http"


# -- HTTP transports -----------------------------------------------------------------


async def test_streamable_http_tools_are_listed_and_called_with_expanded_headers(
    http_server: tuple[int, list[subprocess.Popen[bytes]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, _ = http_server
    monkeypatch.setenv("DEMO_MCP_TOKEN", "http-secret-9876")
    tool = McpTool.from_mapping(
        {
            "name": "web",
            "type": "mcp",
            "transport": "streamable-http",
            "url": f"http://127.0.0.1:{port}/mcp",
            "headers": {"Authorization": "Bearer ${DEMO_MCP_TOKEN}"},
            "timeout": 20,
        }
    )
    try:
        names = [spec.name for spec in await tool.callables()]
        assert "add" in names
        assert await tool.call("add", {"a": 20, "b": 22}) == {"total": 42, "terms": [20, 22]}
        assert await tool.call("echo", {"message": "over http"}) == "over http"
        # Sent to the server; masked in what comes back to agent code.
        assert await tool.call("authorization", {}) == "Bearer ${DEMO_MCP_TOKEN}"
        with pytest.raises(ToolError, match="failing on purpose"):
            await tool.call("fail", {})
        assert "http-secret-9876" not in repr(tool)
    finally:
        await tool.aclose()


async def test_a_restarted_http_server_is_reached_again(
    http_server: tuple[int, list[subprocess.Popen[bytes]]],
) -> None:
    port, processes = http_server
    tool = McpTool.from_mapping(
        {"name": "web", "type": "mcp", "url": f"http://127.0.0.1:{port}/mcp", "timeout": 20}
    )
    try:
        first = await tool.call("pid", {})
        stop_server(processes[0])
        with pytest.raises(ToolError, match="cannot connect to the MCP server"):
            await tool.call("pid", {})
        processes.append(start_server("streamable-http", port))
        second = await tool.call("pid", {})
        assert second != first
        assert second == {"pid": processes[-1].pid}
    finally:
        await tool.aclose()


async def test_an_unreachable_http_server_is_a_clear_tool_error() -> None:
    tool = McpTool.from_mapping(
        {"name": "web", "type": "mcp", "url": f"http://127.0.0.1:{free_port()}/mcp"}
    )
    try:
        with pytest.raises(ToolError, match=r"cannot connect .*ConnectError"):
            await tool.call("pid", {})
    finally:
        await tool.aclose()


async def test_the_sse_transport_works_too() -> None:
    port = free_port()
    process = start_server("sse", port)
    tool = McpTool.from_mapping(
        {
            "name": "old",
            "type": "mcp",
            "transport": "sse",
            "url": f"http://127.0.0.1:{port}/sse",
            "timeout": 20,
        }
    )
    try:
        assert await tool.call("add", {"a": 1, "b": 2}) == {"total": 3, "terms": [1, 2]}
        assert await tool.call("echo", {"message": "sse"}) == "sse"
    finally:
        await tool.aclose()
        stop_server(process)


class _Redirector(BaseHTTPRequestHandler):
    """Answers every request with a 307 to ``self.server.target`` and counts them."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _redirect(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        self.send_response(307)
        self.send_header("Location", self.server.target)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_DELETE = _redirect


async def test_a_redirect_to_another_server_is_not_followed() -> None:
    # A URL that passed review must not turn into another one (a loopback or private
    # address, say): the redirect target is a working server, so following it would
    # succeed. Both SDK lines refuse (the 1.x SDK's default HTTP client would follow
    # it). SSE needs no such test: both SDKs reject an endpoint of another origin.
    port = free_port()
    process = start_server("streamable-http", port)
    redirector = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    redirector.target = f"http://127.0.0.1:{port}/mcp"  # type: ignore[attr-defined]
    redirector.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=redirector.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{redirector.server_address[1]}/mcp"
    tool = McpTool.from_mapping({"name": "moved", "type": "mcp", "url": url, "connect_timeout": 10})
    try:
        with pytest.raises(ToolError, match="cannot connect to the MCP server"):
            await tool.call("pid", {})
        assert redirector.hits >= 1  # type: ignore[attr-defined]
    finally:
        await tool.aclose()
        redirector.shutdown()
        redirector.server_close()
        thread.join(timeout=10)
        stop_server(process)


# -- through a session ---------------------------------------------------------------


AGENT_CODE = """
total = tools.demo.add(a=40, b=2)["total"]
try:
    tools.demo.fail(reason="from agent code")
except Exception as exc:
    error = (type(exc).__name__, str(exc))
names = [c["name"] for c in tools.demo.describe()["callables"]]
[total, list(error), "add" in names, tools.demo.echo(message="sync")]
"""


def _check_agent_result(value: Any) -> None:
    total, error, listed, echoed = value
    assert total == 42
    assert error[0] == "ToolError"
    assert "failing on purpose: from agent code" in error[1]
    assert listed is True
    assert echoed == "sync"


@contextlib.asynccontextmanager
async def demo_session(tmp_path: Path, executor: Any) -> AsyncIterator[Session]:
    async with Session(storage=FileStorage(tmp_path / "data"), executor=executor) as session:
        yield session


async def test_agent_code_calls_mcp_tools_synchronously_in_process(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "demo.yaml").write_text(stdio_yaml())
    executor = InProcessExecutor(InProcessConfig(tools_path=tools))
    async with demo_session(tmp_path, executor) as session:
        result = await session.run(AGENT_CODE, timeout=60)
        assert result.error is None, result.error
        _check_agent_result(result.value)


async def test_agent_code_calls_mcp_tools_synchronously_in_a_subprocess(tmp_path: Path) -> None:
    subprocess_executor = pytest.importorskip("py_code_mode.execution.subprocess")
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "demo.yaml").write_text(stdio_yaml())
    executor = subprocess_executor.SubprocessExecutor(
        subprocess_executor.SubprocessConfig(tools_path=tools)
    )
    async with demo_session(tmp_path, executor) as session:
        result = await session.run(AGENT_CODE, timeout=60)
        assert result.error is None, result.error
        _check_agent_result(result.value)


async def test_py_code_mode_own_mcp_server_works_as_a_tool_of_another_session(
    tmp_path: Path,
) -> None:
    probe = subprocess.run(
        [PYTHON, "-c", "from py_code_mode._private.mcp_sdk import require_mcp2 as r; r('x')"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"the server python ({PYTHON}) cannot run py-code-mode's MCP server")
    inner_base = tmp_path / "inner"
    inner_base.mkdir()
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "inner.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: inner
            description: Another py-code-mode session, reached over MCP
            type: mcp
            command: {PYTHON}
            args: [-m, py_code_mode.mcp_server, --base, "{inner_base}", --executor, in-process]
            paths: ["{Path(py_code_mode.__file__).parent.parent}"]
            writable_paths: ["{inner_base}"]
            timeout: 60
            connect_timeout: 60
            """
        )
    )
    code = """
first = tools.inner.run_code(code="x = 21\\nx * 2")
second = tools.inner.run_code(code="x + 1")
failed = tools.inner.run_code(code="1/0")
[first["value"], second["value"], failed["is_ok"], failed["error_type"]]
"""
    executor = InProcessExecutor(InProcessConfig(tools_path=tools))
    async with demo_session(tmp_path, executor) as session:
        listed = {c["name"] for c in (await session.list_tools())[0]["callables"]}
        assert {"run_code", "list_workflows"} <= listed
        result = await session.run(code, timeout=120)
        assert result.error is None, result.error
        assert result.value == [42, 22, False, "ZeroDivisionError"]
