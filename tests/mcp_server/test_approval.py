"""Over MCP, a call marked confirm asks the client by elicitation (official SDK, stdio)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.mcp_server._support import (
    CALL_TIMEOUT,
    SERVER,
    START_TIMEOUT,
    run,
    server_env,
)

GUARDED = """\
name: guarded
description: Print words, after a person said yes
confirm: true
command: echo
separator: null
schema:
  options:
    api_key: {type: string}
  positional:
    - {name: words, type: array}
"""

CALL = """
try:
    out = tools.guarded(words=['approved'], api_key='k-123-secret').strip()
except ToolDeniedError as exc:
    out = [type(exc).__name__, str(exc)]
out
"""


@contextlib.asynccontextmanager
async def _client(base: Path, callback: Any | None, *args: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=SERVER[0],
        args=[*SERVER[1:], "--base", str(base), "--executor", "in-process", *args],
        env=server_env(),
    )
    extra = {} if callback is None else {"elicitation_callback": callback}
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, read_timeout_seconds=CALL_TIMEOUT, **extra) as session,
    ):
        with anyio.fail_after(START_TIMEOUT):
            await session.initialize()
        yield session


def _base(tmp_path: Path) -> Path:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "guarded.yaml").write_text(GUARDED)
    return tmp_path


class _Answer:
    def __init__(self, result: types.ElicitResult) -> None:
        self.result = result
        self.messages: list[str] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.messages.append(params.message)
        return self.result


async def test_a_client_that_accepts_lets_the_call_run(tmp_path: Path) -> None:
    answer = _Answer(types.ElicitResult(action="accept", content={"approve": True}))
    async with _client(_base(tmp_path), answer) as session:
        result = await run(session, CALL)
    assert isinstance(result["value"], str)  # the tool ran: its output, not a denial
    assert result["value"].endswith("approved")
    assert len(answer.messages) == 1
    assert "tools.guarded" in answer.messages[0]
    assert "k-123-secret" not in answer.messages[0]  # secrets are masked in the question


async def test_a_client_that_declines_gets_tool_denied_error_in_agent_code(tmp_path: Path) -> None:
    answer = _Answer(types.ElicitResult(action="decline"))
    async with _client(_base(tmp_path), answer) as session:
        result = await run(session, CALL)
        again = await run(session, "1 + 1")
    name, message = result["value"]
    assert name == "ToolDeniedError"
    assert "the MCP client answered 'decline'" in message
    assert again["value"] == 2
    assert len(answer.messages) == 1


async def test_a_client_without_elicitation_is_refused_with_how_to_allow_it(
    tmp_path: Path,
) -> None:
    async with _client(_base(tmp_path), None) as session:
        result = await run(session, CALL)
    name, message = result["value"]
    assert name == "ToolDeniedError"
    assert "does not support elicitation" in message
    assert "remove `confirm: true`" in message


async def test_the_confirm_flag_asks_before_tools_not_marked_in_yaml(tmp_path: Path) -> None:
    base = _base(tmp_path)
    (base / "tools" / "echo.yaml").write_text(
        "name: echo\ncommand: echo\nseparator: null\n"
        "schema:\n  positional:\n    - {name: words, type: array}\n"
    )
    answer = _Answer(types.ElicitResult(action="accept", content={"approve": False}))
    async with _client(base, answer, "--confirm", "ech*") as session:
        result = await run(
            session,
            "try:\n    out = tools.echo(words=['x'])\nexcept ToolDeniedError as exc:\n"
            "    out = str(exc)\nout",
        )
    assert "denied by the approver" in result["value"]
    assert "confirm pattern 'ech*'" in answer.messages[0]
