"""call_tool answers as the MCP server does: compared against a real server over stdio."""

from __future__ import annotations

import re
import subprocess
import sys
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


async def test_arguments_may_be_the_json_text_models_send(tmp_path: Path) -> None:
    async with Session.inprocess(tmp_path) as session:
        text = await call_tool(session, "run_code", '{"code": "6 * 7"}')
    assert text.startswith("value:\n42")


async def test_mistakes_in_a_call_come_back_as_text_saying_what_is_wrong(tmp_path: Path) -> None:
    async with Session.inprocess(tmp_path) as session:
        assert "missing required argument 'code'" in await call_tool(session, "run_code", {})
        assert "not valid JSON" in await call_tool(session, "run_code", "{code: 1}")
        assert "must be a JSON object" in await call_tool(session, "run_code", "[1]")
        assert "must be a string" in await call_tool(session, "run_code", {"code": 5})
        unknown = await call_tool(session, "rm_rf", {})
        assert "unknown tool 'rm_rf'" in unknown
        assert "run_code" in unknown
        refused = await call_tool(session, "create_workflow", {"name": "class", "source": "x"})
        assert "class" in refused
        # The session still works after every refusal.
        assert (await call_tool(session, "run_code", {"code": "1 + 1"})).startswith("value:\n2")


def test_importing_the_integrations_loads_neither_the_mcp_sdk_nor_a_framework() -> None:
    probe = (
        "import sys, py_code_mode.integrations\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('mcp', 'mcp_types', 'pybotchi', 'mbxai', 'pygents', 'agentproc', 'openai')]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
