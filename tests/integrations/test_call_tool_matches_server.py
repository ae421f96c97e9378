"""call_tool answers as the MCP server does: compared against a real server over stdio."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from py_code_mode import Session
from py_code_mode.integrations import call_tool
from tests.mcp_server._support import call, stdio_session, text_of

WORKFLOW = 'def run(n: int) -> int:\n    """Double a number."""\n    return n * 2\n'

CALLS: list[tuple[str, dict[str, object]]] = [
    ("run_code", {"code": "x = 40\nprint('hello')\nx + 2"}),
    ("run_code", {"code": "x / 0"}),
    ("run_code", {"code": "artifacts.save('notes.txt', 'some text', description='notes')\nNone"}),
    ("create_workflow", {"name": "double", "source": WORKFLOW, "description": ""}),
    ("list_workflows", {}),
    ("get_workflow", {"name": "double"}),
    ("get_workflow", {"name": "missing"}),
    ("search_workflows", {"query": "double a number"}),
    ("list_artifacts", {}),
    ("load_artifact", {"name": "notes.txt"}),
    ("list_tools", {}),
    ("list_deps", {}),
    ("delete_workflow", {"name": "double"}),
    ("reset_session", {}),
]


def _steady(text: str) -> str:
    # Timings and file paths differ between two runs.
    text = re.sub(r"\[(ok|failed) in \d+ ms\]", "[ms]", text)
    return text.replace("/server/", "/<base>/").replace("/direct/", "/<base>/")


@pytest.mark.slow
async def test_call_tool_gives_the_same_text_as_the_mcp_server(tmp_path: Path) -> None:
    server_texts = []
    async with stdio_session(tmp_path / "server", "--executor", "in-process") as client:
        for name, arguments in CALLS:
            server_texts.append(text_of(await call(client, name, **arguments)))
    ours = []
    async with Session.inprocess(tmp_path / "direct") as session:
        for name, arguments in CALLS:
            ours.append(await call_tool(session, name, arguments))
    for (name, _), theirs, mine in zip(CALLS, server_texts, ours, strict=True):
        assert _steady(mine) == _steady(theirs), name
