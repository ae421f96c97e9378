"""The MCP surface an agent sees, over the official SDK client (stdio and HTTP)."""

from __future__ import annotations

import base64
import contextlib
import json
import struct
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ImageContent

from py_code_mode.mcp_server.resources import MAX_SUBSCRIPTIONS
from tests.mcp_server._support import (
    CALL_TIMEOUT,
    SERVER,
    START_TIMEOUT,
    SUBPROCESS_ONLY,
    call,
    http_server,
    server_env,
    text_of,
)

pytestmark = [SUBPROCESS_ONLY]
BOTH = pytest.mark.parametrize("transport", ["stdio", "http"])


class Inbox:
    """Notifications the client received."""

    def __init__(self) -> None:
        self.logs: list[str] = []
        self.other: list[Any] = []

    async def on_log(self, params: Any) -> None:
        self.logs.append(str(params.data))

    async def on_message(self, message: Any) -> None:
        self.other.append(message)


@contextlib.asynccontextmanager
async def _client(read: Any, write: Any, inbox: Inbox) -> AsyncIterator[ClientSession]:
    """An initialised client session over ``read``/``write`` that reports into ``inbox``."""
    async with ClientSession(
        read,
        write,
        read_timeout_seconds=CALL_TIMEOUT,
        logging_callback=inbox.on_log,
        message_handler=inbox.on_message,
    ) as session:
        with anyio.fail_after(START_TIMEOUT):
            await session.initialize()
        yield session


@contextlib.asynccontextmanager
async def stdio(base: Path, inbox: Inbox, *args: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=SERVER[0], args=[*SERVER[1:], "--base", str(base), *args], env=server_env()
    )
    async with (
        stdio_client(params) as (read, write),
        _client(read, write, inbox) as session,
    ):
        yield session


@contextlib.asynccontextmanager
async def http(url: str, inbox: Inbox) -> AsyncIterator[ClientSession]:
    async with (
        streamable_http_client(url) as (read, write),
        _client(read, write, inbox) as session,
    ):
        yield session


@contextlib.asynccontextmanager
async def connect(transport: str, base: Path) -> AsyncIterator[tuple[ClientSession, Inbox]]:
    inbox = Inbox()
    if transport == "stdio":
        async with stdio(base, inbox) as session:
            yield session, inbox
    else:
        with http_server(base) as server:
            async with http(server.url, inbox) as session:
                yield session, inbox


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\xff\x00\x00" * 2 + b"\x00" + b"\x00\x00\xff" * 2)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@BOTH
async def test_the_whole_tool_list_fits_in_8000_characters_and_every_tool_is_described(
    transport: str, base: Path
) -> None:
    async with connect(transport, base) as (session, _):
        listed = await session.list_tools()
        size = len(json.dumps(listed.model_dump(mode="json", by_alias=True, exclude_none=True)))
        assert size <= 8000, size
        for tool in listed.tools:
            assert len(tool.description or "") >= 20, tool.name
        by_name = {t.name: t for t in listed.tools}
        assert "workflow-first" in by_name["run_code"].description
        assert sum("workflow-first" in (t.description or "") for t in listed.tools) == 1
        assert by_name["run_code"].output_schema is not None


@BOTH
async def test_big_output_comes_back_once_capped_and_whole_as_a_readable_artifact(
    transport: str, base: Path
) -> None:
    async with connect(transport, base) as (session, _):
        result = await call(session, "run_code", code="for i in range(10_000): print(f'line {i}')")
        assert not result.is_error, text_of(result)
        reply = json.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True))
        assert len(reply) <= 25_000, len(reply)
        data = result.structured_content
        assert data is not None
        assert data["stdout"] is None
        assert data["truncated"]
        name = data["output_artifact"]
        assert name.startswith("run-output/")
        assert name in text_of(result)
        assert "line 9999" in text_of(result)
        read = await session.read_resource(f"artifact://{name}")
        full = read.contents[0].text
        assert full.count("\n") == 10_000
        assert full.startswith("line 0\n")
        loaded = await call(session, "run_code", code=f"len(artifacts.load({name!r}).splitlines())")
        assert loaded.structured_content["value"] == 10_000


@BOTH
async def test_artifacts_are_resources_text_as_text_and_bytes_with_their_mime_type(
    transport: str, base: Path
) -> None:
    async with connect(transport, base) as (session, _):
        png = tiny_png()
        code = (
            "artifacts.save('notes.txt', 'hello')\n"
            "artifacts.save('data.json', {'a': 1})\n"
            f"artifacts.save('pics/dot.png', {png!r})"
        )
        result = await call(session, "run_code", code=code)
        assert not result.is_error, text_of(result)
        listed = await session.list_resources()
        uris = {r.uri: r for r in listed.resources}
        assert {"artifact://notes.txt", "artifact://data.json", "artifact://pics/dot.png"} <= set(
            uris
        )
        templates = await session.list_resource_templates()
        assert templates.resource_templates[0].uri_template.startswith("artifact://")
        text = (await session.read_resource("artifact://notes.txt")).contents[0]
        assert text.text == "hello"
        assert text.mime_type == "text/plain"
        data = (await session.read_resource("artifact://data.json")).contents[0]
        assert json.loads(data.text) == {"a": 1}
        assert data.mime_type == "application/json"
        blob = (await session.read_resource("artifact://pics/dot.png")).contents[0]
        assert base64.b64decode(blob.blob) == png
        assert blob.mime_type == "image/png"
        with pytest.raises(Exception, match="missing"):
            await session.read_resource("artifact://missing.txt")


async def test_a_resource_uri_cannot_leave_the_artifact_store(base: Path) -> None:
    """Attack: traversal, percent-encoded dots, absolute paths, lone surrogates, huge names."""
    secret = base.parent / "secret.txt"
    secret.write_text("do not read")
    async with connect("stdio", base) as (session, _):
        for uri in (
            "artifact://../secret.txt",
            "artifact://%2e%2e/secret.txt",
            "artifact://%2E%2E%2Fsecret.txt",
            f"artifact://{secret}",
            "artifact://" + str(secret).replace("/", "%2F"),
            "artifact://a/../../secret.txt",
            "artifact://%ED%A0%80",
            "artifact://%00",
            "artifact://" + "a" * 300,  # longer than a file name may be
            "artifact://" + "a/" * 3000 + "b",  # longer than a path may be
            "artifact://" + "x" * 1_000_000,
        ):
            with pytest.raises(Exception) as caught:
                await session.read_resource(uri)
            assert "do not read" not in str(caught.value), uri
        shown = await call(
            session, "run_code", code="artifacts.show(b'\\x89PNG\\r\\n\\x1a\\n', name='../x.png')"
        )
        assert "InvalidNameError" in text_of(shown)
        assert not (base.parent / "x.png").exists()
        assert await session.send_ping() is not None  # the server survived all of it


async def test_a_resource_holding_lone_surrogates_reads_back_escaped(base: Path) -> None:
    """Attack: agent code stores lone surrogates in a str artifact, a name and a JSON value."""
    async with connect("stdio", base) as (session, _):
        code = (
            "artifacts.save('bad.txt', 'a\\ud800b')\n"
            "artifacts.save('bad.json', {'k\\udfff': 'v\\ud800'})"
        )
        saved = await call(session, "run_code", code=code)
        assert not saved.is_error, text_of(saved)
        text = (await session.read_resource("artifact://bad.txt")).contents[0]
        assert text.text == "a\\ud800b"
        data = (await session.read_resource("artifact://bad.json")).contents[0]
        assert json.loads(data.text) == {"k\\udfff": "v\\ud800"}
        listed = await session.list_resources()
        assert "artifact://bad.txt" in {r.uri for r in listed.resources}
        assert await session.send_ping() is not None


@BOTH
async def test_a_subscribed_client_hears_when_a_run_changes_an_artifact(
    transport: str, base: Path
) -> None:
    async with connect(transport, base) as (session, inbox):
        await call(session, "run_code", code="artifacts.save('watched.txt', 'v1')")
        await session.subscribe_resource("artifact://watched.txt")
        await call(session, "run_code", code="artifacts.save('watched.txt', 'version 2')")
        with anyio.fail_after(10):
            while not any(
                "artifact://watched.txt" in repr(getattr(m, "params", m)) for m in inbox.other
            ):
                await anyio.sleep(0.05)


async def test_one_connection_cannot_watch_more_than_the_subscription_cap(base: Path) -> None:
    """Attack: a client subscribes to ever more (huge) URIs to grow the server's memory."""
    async with connect("stdio", base) as (session, _):
        for i in range(MAX_SUBSCRIPTIONS):
            await session.subscribe_resource(f"artifact://{i}-" + "x" * 100)
        await session.subscribe_resource("artifact://0-" + "x" * 100)  # already watched: fine
        with pytest.raises(Exception, match="unsubscribe from one first"):
            await session.subscribe_resource("artifact://" + "y" * 100_000)
        await session.unsubscribe_resource("artifact://0-" + "x" * 100)
        await session.subscribe_resource("artifact://after-unsubscribing.txt")
        assert await session.send_ping() is not None


@BOTH
async def test_an_image_as_last_value_comes_back_as_image_content_and_an_artifact(
    transport: str, base: Path
) -> None:
    async with connect(transport, base) as (session, _):
        png = tiny_png()
        result = await call(session, "run_code", code=f"{png!r}")
        assert not result.is_error, text_of(result)
        images = [b for b in result.content if isinstance(b, ImageContent)]
        assert len(images) == 1
        assert images[0].mime_type == "image/png"
        assert base64.b64decode(images[0].data) == png
        name = result.structured_content["images"][0]
        blob = (await session.read_resource(f"artifact://{name}")).contents[0]
        assert base64.b64decode(blob.blob) == png
        shown = await call(session, "run_code", code=f"artifacts.show({png!r}, name='shown.png')")
        assert any(isinstance(b, ImageContent) for b in shown.content)
        assert shown.structured_content["images"] == ["shown.png"]


@BOTH
async def test_output_of_a_long_run_reaches_the_client_while_it_runs(
    transport: str, base: Path
) -> None:
    async with connect(transport, base) as (session, inbox):
        progress: list[tuple[float, str | None]] = []
        finished = anyio.Event()

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            if not finished.is_set():
                progress.append((value, message))

        # A 2 s run printing a line every 0.25 s.
        code = (
            "import time\n"
            "for i in range(8):\n"
            "    print(f'step {i}', flush=True)\n"
            "    time.sleep(0.25)"
        )
        with anyio.fail_after(CALL_TIMEOUT):
            result = await session.call_tool(
                "run_code", {"code": code}, progress_callback=on_progress
            )
        finished.set()
        assert not result.is_error, text_of(result)
        assert "step 7" in text_of(result)
        assert progress, "no progress notification arrived during the run"
        assert any("step 0" in (m or "") for _, m in progress)
        # Without a progress token the output arrives as log messages.
        await call(session, "run_code", code=code)
        assert any("step 0" in line for line in inbox.logs)


@BOTH
async def test_unknown_and_invalid_arguments_get_one_short_line_naming_them(
    transport: str, base: Path
) -> None:
    async with connect(transport, base) as (session, _):
        unknown = await call(session, "run_code", code="1", cod="1")
        assert unknown.is_error
        assert "'cod'" in text_of(unknown)
        assert "code" in text_of(unknown)
        bad = await call(session, "run_code", code="1", timeout=-1)
        assert bad.is_error
        text = text_of(bad)
        assert "'timeout'" in text
        assert "pydantic" not in text
        assert len(text.splitlines()) == 1
        bad_name = await call(session, "create_workflow", name="1bad", source="def run(): pass")
        assert bad_name.is_error
        assert text_of(bad_name).startswith("workflow name '1bad'")
        missing = await call(session, "search_workflows")
        assert missing.is_error
        assert "'query'" in text_of(missing)
        unlimited = await call(session, "run_code", code="40 + 2", timeout=0)
        assert not unlimited.is_error
        assert unlimited.structured_content["value"] == 42


@BOTH
async def test_stderr_comes_back_separately_and_stdout_buffer_works(
    transport: str, base: Path
) -> None:
    async with connect(transport, base) as (session, _):
        code = (
            "import sys\n"
            "sys.stdout.buffer.write('bytes ok \\u00e9\\n'.encode())\n"
            "sys.stdout.buffer.flush()\n"
            "print('to err', file=sys.stderr)\n"
            "print('to out')"
        )
        result = await call(session, "run_code", code=code)
        assert not result.is_error, text_of(result)
        data = result.structured_content
        assert "bytes ok \u00e9" in data["stdout"]
        assert "to out" in data["stdout"]
        assert "to err" not in data["stdout"]
        assert data["stderr"].strip() == "to err"
        assert "stderr:\nto err" in text_of(result)


@BOTH
async def test_broken_tool_and_workflow_files_are_listed_and_named_in_errors(
    transport: str, base: Path
) -> None:
    (base / "tools").mkdir(parents=True)
    (base / "tools" / "bad.yaml").write_text("name: bad\ncommand: echo\nunknown_field: 1\n")
    (base / "tools" / "wx.yaml").write_text(
        "name: wx\ncommand: echo\ndescription: prints text\ntags: [forecast, weather]\n"
    )
    (base / "workflows").mkdir()
    (base / "workflows" / "broken.py").write_text("def run(:\n    pass\n")
    async with connect(transport, base) as (session, _):
        tools = await call(session, "list_tools")
        assert not tools.is_error, text_of(tools)
        problems = tools.structured_content["problems"]
        assert [Path(p["path"]).name for p in problems] == ["bad.yaml"]
        assert "unknown_field" in problems[0]["message"]
        assert "bad.yaml" in text_of(tools)
        workflows = await call(session, "list_workflows")
        assert [p["name"] for p in workflows.structured_content["problems"]] == ["broken"]
        assert "broken" in text_of(workflows)
        missing = await call(session, "run_code", code="tools.bad.run()")
        assert "bad.yaml" in missing.structured_content["error"]
        found = await call(session, "search_tools", query="forecast")
        assert [t["name"] for t in found.structured_content["results"]][:1] == ["wx"]


async def test_an_in_process_run_streams_its_output_too(base: Path) -> None:
    inbox = Inbox()
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    code = "import time\nfor i in range(8):\n    print(f'tick {i}')\n    time.sleep(0.25)"
    async with stdio(base, inbox, "--executor", "in-process") as session:
        with anyio.fail_after(CALL_TIMEOUT):
            result = await session.call_tool(
                "run_code", {"code": code}, progress_callback=on_progress
            )
    assert not result.is_error, text_of(result)
    assert any("tick 0" in m for m in progress)


async def test_agent_code_gets_plain_values_from_an_mcp_server_tool(base: Path) -> None:
    demo = Path(__file__).parents[1] / "tools" / "fixtures" / "mcp_demo_server.py"
    (base / "tools").mkdir(parents=True)
    (base / "tools" / "calc.yaml").write_text(
        f"name: calc\ntype: mcp\ncommand: {sys.executable}\nargs: [{str(demo)!r}]\ntimeout: 30\n"
        f"paths: [{str(demo.parent)!r}]\n"  # the server runs jailed: its script must be visible
    )
    async with stdio(base, Inbox()) as session:
        result = await call(session, "run_code", code="tools.calc.multiply(a=6, b=7) + 1")
    assert not result.is_error, text_of(result)
    assert result.structured_content["value"] == 43, text_of(result)
