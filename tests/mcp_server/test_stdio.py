"""End-to-end: the official MCP client drives a real server process over stdio."""

from __future__ import annotations

import base64
import os
import subprocess
import textwrap
from pathlib import Path

import anyio
import jsonschema
import pytest
from mcp import Client, StdioServerParameters

from tests.mcp_server._support import (
    SERVER,
    START_TIMEOUT,
    SUBPROCESS_ONLY,
    call,
    read_line,
    run,
    server_env,
    stdio_session,
    text_of,
    wait_gone,
)

IN_PROCESS = ("--executor", "in-process")

DOCUMENTED_TOOLS = {
    "run_code",
    "list_tools",
    "search_tools",
    "list_workflows",
    "search_workflows",
    "create_workflow",
    "delete_workflow",
    "list_artifacts",
    "list_deps",
    "add_dep",
    "remove_dep",
    "get_workflow",
    "reset_session",
    "load_artifact",
}

DOUBLE = textwrap.dedent(
    '''
    def run(n: int) -> int:
        """Double a number."""
        return n * 2
    '''
)


async def test_tool_list_offers_the_documented_tools_and_run_codes_output_schema(
    base: Path,
) -> None:
    async with stdio_session(base, *IN_PROCESS) as session:
        listed = (await session.list_tools()).tools
    by_name = {tool.name: tool for tool in listed}
    assert set(by_name) == DOCUMENTED_TOOLS
    assert by_name["run_code"].output_schema
    run_code = by_name["run_code"].description or ""
    for word in ("tools", "workflows", "artifacts", "deps", "workflows.search", "workflows.create"):
        assert word in run_code


async def test_run_codes_listed_output_schema_accepts_its_results_in_both_dialects(
    base: Path,
) -> None:
    async with stdio_session(base, *IN_PROCESS) as session:
        listed = (await session.list_tools()).tools
        schema = next(tool for tool in listed if tool.name == "run_code").output_schema
        results = [
            await run(session, code)
            for code in ("1+1", "print('out')\nNone", "1/0", "import sys; sys.stderr.write('e')")
        ]
    assert schema is not None
    declared = jsonschema.validators.validator_for(schema)
    assert declared is jsonschema.Draft7Validator
    # The keywords must mean the same under the MCP default dialect too.
    for validator in (declared, jsonschema.Draft202012Validator):
        validator.check_schema(schema)
        for data in results:
            validator(schema).validate(data)
    assert any(not data["is_ok"] for data in results)
    with pytest.raises(jsonschema.ValidationError):
        declared(schema).validate({**results[0], "stdout": 3})


async def test_missing_base_directory_is_created(base: Path) -> None:
    assert not base.exists()
    async with stdio_session(base, *IN_PROCESS) as session:
        await run(session, "1")
    assert base.is_dir()


async def test_run_code_keeps_variables_between_calls(base: Path) -> None:
    async with stdio_session(base, *IN_PROCESS) as session:
        await run(session, "counter = 41\ndef bump(x):\n    return x + 1")
        result = await run(session, "print('bumping'); bump(counter)")
        text = text_of(await call(session, "run_code", code="counter"))
    assert result["value"] == 42
    assert result["stdout"] == "bumping\n"
    assert result["is_ok"] is True
    assert "value:\n41" in text


async def test_agent_exception_is_a_normal_result_with_the_traceback(base: Path) -> None:
    async with stdio_session(base, *IN_PROCESS) as session:
        result = await call(session, "run_code", code="print('before')\nraise ValueError('bad x')")
        after = await run(session, "'still serving'")
    assert not result.is_error
    data = result.structured_content
    assert data is not None
    assert data["is_ok"] is False
    assert data["error_type"] == "ValueError"
    assert "bad x" in data["error"]
    assert data["stdout"] == "before\n"
    text = text_of(result)
    assert text.index("stdout:") < text.index("error (ValueError):")
    assert after["value"] == "still serving"


async def test_create_workflow_then_invoke_it_from_run_code(base: Path) -> None:
    async with stdio_session(base, *IN_PROCESS) as session:
        created = await call(
            session, "create_workflow", name="double", source=DOUBLE, description=""
        )
        invoked = await run(session, "workflows.double(n=21)")
        listed = await call(session, "list_workflows")
        found = await call(session, "search_workflows", query="double a number")
        shown = await call(session, "get_workflow", name="double")
    assert not created.is_error, text_of(created)
    assert "double(n: int)" in text_of(created)
    assert invoked["value"] == 42
    assert [w["name"] for w in (listed.structured_content or {})["workflows"]] == ["double"]
    assert (found.structured_content or {})["results"][0]["name"] == "double"
    assert "return n * 2" in (shown.structured_content or {})["source"]
    assert (base / "workflows" / "double.py").is_file()


async def test_bad_arguments_give_a_tool_error_and_the_server_keeps_serving(base: Path) -> None:
    async with stdio_session(base, *IN_PROCESS) as session:
        wrong_type = await call(session, "run_code", code=123)
        missing = await call(session, "create_workflow", name="x")
        negative = await call(session, "run_code", code="1", timeout=-5)
        bad_source = await call(session, "create_workflow", name="broken", source="def run(:\n")
        bad_name = await call(session, "create_workflow", name="class", source=DOUBLE)
        still = await run(session, "2 + 2")
    for result in (wrong_type, missing, negative, bad_source, bad_name):
        assert result.is_error
    assert "code" in text_of(wrong_type)
    assert "source" in text_of(missing)
    assert "broken" in text_of(bad_source) or "syntax" in text_of(bad_source).lower()
    assert still["value"] == 4


async def test_unknown_workflow_gives_a_tool_error(base: Path) -> None:
    async with stdio_session(base, *IN_PROCESS) as session:
        shown = await call(session, "get_workflow", name="nope")
        deleted = await call(session, "delete_workflow", name="nope")
        invoked = await call(session, "run_code", code="workflows.nope()")
    assert shown.is_error
    assert "no workflow named 'nope'" in text_of(shown)
    assert deleted.is_error
    # From agent code the same mistake is an ordinary error result.
    assert not invoked.is_error
    assert (invoked.structured_content or {})["is_ok"] is False


async def test_invalid_dep_spec_gives_a_tool_error(base: Path) -> None:
    async with stdio_session(base, *IN_PROCESS) as session:
        result = await call(session, "add_dep", spec="requests; rm -rf /")
        listed = await call(session, "list_deps")
    assert result.is_error
    assert "requests; rm -rf /" in text_of(result)
    assert (listed.structured_content or {})["deps"] == []


async def test_no_runtime_deps_hides_add_dep_and_remove_dep(base: Path) -> None:
    async with stdio_session(base, *IN_PROCESS, "--no-runtime-deps") as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        unknown = await call(session, "add_dep", spec="requests")
        from_code = await run(session, "deps.add('requests')")
        description = next(
            t.description for t in (await session.list_tools()).tools if t.name == "run_code"
        )
    assert names == DOCUMENTED_TOOLS - {"add_dep", "remove_dep"}
    assert unknown.is_error
    assert from_code["is_ok"] is False
    assert "disabled" in (description or "")


async def test_large_output_is_truncated_with_a_marker(base: Path) -> None:
    async with stdio_session(base, *IN_PROCESS) as session:
        result = await call(session, "run_code", code="print('x' * 200_000 + 'END'); 'y' * 100_000")
    data = result.structured_content or {}
    assert data["truncated"] is True
    assert data["stdout"] is None
    text = text_of(result)
    assert "[truncated" in text
    assert "END\n" in text
    assert data["output_artifact"] in text
    assert len(text) < 60_000


async def test_artifacts_saved_by_code_can_be_listed_and_loaded(base: Path) -> None:
    async with stdio_session(base, *IN_PROCESS) as session:
        await run(
            session,
            "artifacts.save('notes.txt', 'hello', description='greeting')\n"
            "artifacts.save('data.json', {'a': [1, 2]})\n"
            "artifacts.save('blob.bin', b'\\x00\\xff')",
        )
        listed = await call(session, "list_artifacts")
        text = await call(session, "load_artifact", name="notes.txt")
        data = await call(session, "load_artifact", name="data.json")
        blob = await call(session, "load_artifact", name="blob.bin")
        missing = await call(session, "load_artifact", name="absent.txt")
    names = [a["name"] for a in (listed.structured_content or {})["artifacts"]]
    assert sorted(names) == ["blob.bin", "data.json", "notes.txt"]
    assert (text.structured_content or {})["data"] == "hello"
    assert (data.structured_content or {})["data"] == {"a": [1, 2]}
    blob_out = blob.structured_content or {}
    assert blob_out["encoding"] == "base64"
    assert base64.b64decode(blob_out["data"]) == b"\x00\xff"
    assert missing.is_error


async def test_reset_session_clears_variables_but_keeps_workflows(base: Path) -> None:
    async with stdio_session(base, *IN_PROCESS) as session:
        await call(session, "create_workflow", name="double", source=DOUBLE)
        await run(session, "kept = 1")
        reset = await call(session, "reset_session")
        gone = await run(session, "kept")
        still = await run(session, "workflows.double(n=2)")
    assert not reset.is_error
    assert gone["error_type"] == "NameError"
    assert still["value"] == 4


async def test_tools_from_the_base_directory_are_listed_and_callable(
    tmp_path: Path, tools_dir: Path
) -> None:
    async with stdio_session(tmp_path, *IN_PROCESS) as session:
        listed = await call(session, "list_tools")
        found = await call(session, "search_tools", query="print words")
        greeted = await run(session, "tools.greet.hello(text='mcp')")
    names = [t["name"] for t in (listed.structured_content or {})["tools"]]
    assert names == ["fail", "greet"]
    assert "tools.greet.hello" in text_of(listed)
    assert (found.structured_content or {})["results"][0]["name"] == "greet"
    assert "mcp" in str(greeted["value"])


async def test_code_writing_to_the_real_stdout_does_not_corrupt_the_protocol(base: Path) -> None:
    async with stdio_session(base, *IN_PROCESS) as session:
        await run(session, "import os, sys\nos.write(1, b'noise\\n')\nsys.__stdout__.write('x\\n')")
        after = await run(session, "'alive'")
    assert after["value"] == "alive"


async def test_a_client_on_the_stateless_protocol_keeps_its_variables(base: Path) -> None:
    params = StdioServerParameters(
        command=SERVER[0],
        args=[*SERVER[1:], "--base", str(base), *IN_PROCESS],
        env=server_env(),
    )
    with anyio.fail_after(START_TIMEOUT * 2):
        async with Client(params) as client:
            version = client.protocol_version
            await client.call_tool("run_code", {"code": "y = 5"})
            result = await client.call_tool("run_code", {"code": "y * 2"})
    assert version == "2026-07-28"
    assert (result.structured_content or {})["value"] == 10


def test_bad_flags_exit_with_a_clear_message(tmp_path: Path) -> None:
    missing_tools = subprocess.run(
        [*SERVER, "--base", str(tmp_path), "--tools", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
        check=False,
    )
    bad_timeout = subprocess.run(
        [*SERVER, "--base", str(tmp_path), "--timeout", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
        check=False,
    )
    unknown = subprocess.run(
        [*SERVER, "--executor", "cloud"],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
        check=False,
    )
    assert missing_tools.returncode == 2
    assert "--tools" in missing_tools.stderr
    assert "no such directory" in missing_tools.stderr
    assert missing_tools.stdout == ""
    assert bad_timeout.returncode == 2
    assert "--timeout" in bad_timeout.stderr
    assert unknown.returncode == 2
    assert "invalid choice" in unknown.stderr


def test_an_invalid_redis_prefix_is_refused_at_startup(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*SERVER, "--base", str(tmp_path), "--redis", "redis://127.0.0.1:1/0", "--prefix", "a:b"],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
        check=False,
    )
    assert proc.returncode == 2
    assert "prefix" in proc.stderr or "RedisStorage" in proc.stderr


async def test_unreachable_redis_gives_a_tool_error_and_the_server_keeps_serving(
    base: Path,
) -> None:
    pytest.importorskip("py_code_mode.storage.redis")
    async with stdio_session(
        base, *IN_PROCESS, "--redis", "redis://127.0.0.1:1/0", "--prefix", "t"
    ) as session:
        first = await call(session, "run_code", code="1")
        second = await call(session, "list_workflows")
    assert first.is_error
    assert "could not start" in text_of(first)
    assert second.is_error


@pytest.mark.parametrize(
    "executor", ["in-process", pytest.param("subprocess", marks=SUBPROCESS_ONLY)]
)
async def test_each_executor_serves_run_code(base: Path, executor: str) -> None:
    async with stdio_session(base, "--executor", executor) as session:
        await run(session, "import sys\nanswer = 6 * 7")
        result = await run(session, "answer")
    assert result["value"] == 42


@SUBPROCESS_ONLY
async def test_closing_stdin_stops_the_server_and_its_worker(base: Path) -> None:
    # Host pids: unjailed (the jailed lifecycle is in tests/security/test_lifecycle.py).
    async with stdio_session(base, "--executor", "subprocess", "--isolation", "none") as session:
        worker = (await run(session, "import os\nos.getpid()"))["value"]
    assert isinstance(worker, int)
    assert worker != os.getpid()
    assert wait_gone(worker), f"worker {worker} outlived the server"


@SUBPROCESS_ONLY
def test_sigterm_stops_the_server_and_its_worker(base: Path) -> None:
    import json

    proc = subprocess.Popen(
        [*SERVER, "--base", str(base), "--executor", "subprocess", "--isolation", "none"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=server_env(),
    )
    assert proc.stdin is not None
    assert proc.stdout is not None

    def send(message: dict[str, object]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        proc.stdin.flush()

    try:
        send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            }
        )
        assert b'"result"' in read_line(proc.stdout)
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "run_code", "arguments": {"code": "import os\nos.getpid()"}},
            }
        )
        answer = json.loads(read_line(proc.stdout))
        worker = answer["result"]["structuredContent"]["value"]
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        assert wait_gone(worker), f"worker {worker} outlived the server"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


async def test_a_run_past_its_timeout_is_a_result_and_the_server_keeps_serving(
    base: Path,
) -> None:
    async with stdio_session(base, *IN_PROCESS, "--timeout", "1") as session:
        by_default = await run(session, "while True:\n    pass")
        by_argument = await call(session, "run_code", code="while True:\n    pass", timeout=0.5)
        after = await run(session, "'next'")
    assert by_default["is_ok"] is False
    assert "Timeout" in (by_default["error_type"] or "")
    data = by_argument.structured_content or {}
    assert data["is_ok"] is False
    assert data["execution_time_ms"] < 5_000
    assert after["value"] == "next"
